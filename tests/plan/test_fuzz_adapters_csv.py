"""Fuzzing the adapters CSV reader (`adapter_id,rank,rate`): any file gives a valid workload or one
InputError, never another exception (see tests/fuzz_inputs.py)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from fuzz_inputs import any_bytes, csv_text, mostly, table_text
from hypothesis import example, given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.plan.inputs import CSV_HEADER, read_adapters_csv

# A field longer than the csv module's limit (131,072 characters) once escaped as a traceback.
LONG_FIELD = "x" * 200_000
FUZZ = settings(max_examples=200, deadline=None)


def read(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "adapters.csv"
        path.write_bytes(content)
        try:
            workload = read_adapters_csv(path)
        except InputError:
            return
    ids = [a.id for a in workload.adapters]
    assert ids and len(set(ids)) == len(ids) and all(ids)
    for adapter in workload.adapters:
        assert adapter.rank > 0 and math.isfinite(adapter.rate_req_s) and adapter.rate_req_s >= 0


@FUZZ
@given(any_bytes())
@example(f"adapter_id,rank,rate\n{LONG_FIELD},8,1\n".encode())
def test_any_bytes(content):
    read(content)


@FUZZ
@given(csv_text(CSV_HEADER, vocabulary=["a", "b", "8", "16", "0.5"]))
def test_files_of_its_own_words(text):
    read(text.encode("utf-8", "surrogatepass"))


PLAUSIBLE = table_text([
    ("adapter_id", mostly(st.sampled_from(["a", "b", "c", " a "]))),
    ("rank", mostly(st.sampled_from(["8", "16", "32"]))),
    ("rate", mostly(st.floats(0, 5).map(repr))),
])


@FUZZ
@given(PLAUSIBLE)
def test_plausible_files(text):
    read(text.encode("utf-8", "surrogatepass"))

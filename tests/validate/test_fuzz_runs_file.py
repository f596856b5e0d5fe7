"""Fuzzing the runs file reader: any file gives valid runs or one InputError, never another
exception (see tests/fuzz_inputs.py)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from fuzz_inputs import any_bytes, csv_text, mostly
from hypothesis import example, given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.validate import load_runs
from loratwin.validate.runs import REQUIRED_COLUMNS

# A field longer than the csv module's limit (131,072 characters) once escaped as a traceback.
LONG_FIELD = "x" * 200_000
FUZZ = settings(max_examples=200, deadline=None)
HEADER = (*REQUIRED_COLUMNS, "total_tok_s", "starved_approx")
VOCABULARY = ("dt_modelling", "llama-3.1-8b-instruct", "ok", "oom_at_start", "port_bind_error", "8 16", "0.1 0.2", "4 4")


def read(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "runs.csv"
        path.write_bytes(content)
        try:
            runs = load_runs(path)
        except InputError:
            return
    for run in runs:
        assert run.max_loras >= 1 and run.served_adapters >= 1 and run.max_lora_rank >= 1
        assert run.rank_cycle and min(run.rank_cycle) >= 1 and len(run.rate_values) == len(run.rate_counts)
        assert all(math.isfinite(v) and v >= 0 for v in run.rate_values)
        assert all(v is None or math.isfinite(v) for v in run.measured.values())
        if run.start_known:
            assert sum(run.rate_counts) == run.served_adapters and run.max_loras <= run.served_adapters


@FUZZ
@given(any_bytes())
@example(f"{','.join(HEADER)}\n{LONG_FIELD}\n".encode())
def test_any_bytes(content):
    read(content)


@FUZZ
@given(csv_text(HEADER, vocabulary=VOCABULARY))
def test_files_of_its_own_words(text):
    read(text.encode("utf-8", "surrogatepass"))


@st.composite
def _consistent_row(draw) -> list[str]:
    """A run that can be replayed: counts add up to the served adapters, ranks within the max."""
    served = draw(st.sampled_from([8, 16, 32]))
    split = draw(st.integers(0, served))
    max_rank = draw(st.sampled_from([16, 32]))
    ranks = draw(st.lists(st.sampled_from([8, 16, max_rank]), min_size=1, max_size=3))
    return [
        draw(st.sampled_from(["r1", "r2", "run/a_8_8_16"])), draw(st.sampled_from(["dt_modelling", "ml_test"])),
        "llama-3.1-8b-instruct", str(draw(st.sampled_from([8, served]))), str(served), str(max_rank),
        " ".join(map(str, ranks)), f"{draw(st.floats(0, 4))!r} {draw(st.floats(0, 4))!r}", f"{split} {served - split}",
        draw(st.sampled_from(["ok", "oom_at_start", "port_bind_error", "slurm_timeout"])),
        repr(draw(st.floats(0, 5000))), draw(st.sampled_from(["", "0", "1"])),
    ]


@st.composite
def _plausible_text(draw) -> str:
    """The header, then consistent rows with now and then one field replaced, cut or added."""
    lines = [",".join(HEADER)]
    for _ in range(draw(st.integers(0, 4))):
        row = draw(_consistent_row())
        change = draw(st.sampled_from(["none", "none", "field", "cut", "add"]))
        if change == "field":
            row[draw(st.integers(0, len(row) - 1))] = draw(mostly(st.just(""), VOCABULARY))
        elif change == "cut":
            row = row[: draw(st.integers(0, len(row) - 1))]
        elif change == "add":
            row.append("extra")
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


PLAUSIBLE = _plausible_text()


@FUZZ
@given(PLAUSIBLE)
def test_plausible_files(text):
    read(text.encode("utf-8", "surrogatepass"))

"""Fuzzing the workload YAML loader and the trace loader: any file gives a valid workload or one
InputError, never another exception (see tests/fuzz_inputs.py)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import yaml
from fuzz_inputs import any_bytes, csv_text, small_scalars, words, yaml_documents
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.workload import WorkloadSpec, load_trace, load_workload_yaml
from loratwin.workload.trace import ADAPTERS_HEADER, TRACE_HEADER

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORKLOAD_KEYS = (
    "adapters", "layout", "arrival", "lengths", "id", "rank", "rate_req_s", "kind", "served", "rates", "ranks",
    "seed", "zipf", "reference", "total_rate_req_s", "exponent", "poisson", "gamma", "unpredictable", "cv",
    "period_s", "sigma", "schedule", "until_s", "scale", "sharegpt", "parametric", "table", "mean_prompt_tokens",
    "mean_output_tokens", "max_prompt_tokens", "max_total_tokens",
)


def check_workload(workload: WorkloadSpec) -> None:
    assert workload.adapters
    for adapter in workload.adapters:
        assert adapter.rank > 0 and math.isfinite(adapter.rate_req_s) and adapter.rate_req_s >= 0


def load_yaml_text(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "w.yaml"
        path.write_bytes(content)
        try:
            check_workload(load_workload_yaml(path))
        except InputError:
            pass


@FUZZ
@given(any_bytes())
def test_workload_yaml_from_any_bytes(content):
    load_yaml_text(content)


# Plausible adapters, layouts and arrivals (mostly valid values, sometimes not), so that examples
# get past the top-level checks into the values, the arrival processes and the layouts.
def _mostly(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(valid, valid, valid, small_scalars())


_rank = _mostly(st.sampled_from([8, 16, 32]))
_rate = _mostly(st.floats(0, 3))
_segment = st.fixed_dictionaries({"scale": _rate}, optional={"until_s": _mostly(st.floats(1, 500))})
_arrival = st.one_of(
    yaml_documents(WORKLOAD_KEYS),
    st.sampled_from(["poisson", "gamma", "unpredictable"]),
    st.fixed_dictionaries(
        {"kind": _mostly(st.sampled_from(["poisson", "gamma", "unpredictable"]))},
        optional={"cv": _mostly(st.floats(0.1, 5)), "period_s": _mostly(st.floats(1, 900)),
                  "sigma": _mostly(st.floats(0.1, 3)), "schedule": st.lists(_segment, max_size=3)},
    ),
)
_lengths = st.one_of(
    yaml_documents(WORKLOAD_KEYS),
    st.fixed_dictionaries(
        {"kind": _mostly(st.sampled_from(["sharegpt", "parametric"]))},
        optional={"mean_prompt_tokens": _mostly(st.floats(4, 900)), "mean_output_tokens": _mostly(st.floats(4, 900)),
                  "table": small_scalars()},
    ),
)
_adapter = st.fixed_dictionaries(
    {"id": words(["a", "b"]), "rank": _rank, "rate_req_s": _rate}, optional={"arrival": _arrival}
)
_layout = st.fixed_dictionaries(
    {"served": _mostly(st.integers(1, 40)), "rates": st.lists(_rate, max_size=3), "ranks": st.lists(_rank, max_size=3)},
    optional={"kind": _mostly(st.sampled_from(["reference", "zipf"])), "seed": _mostly(st.integers(0, 9)),
              "total_rate_req_s": _rate, "exponent": _rate},
)
_sections = {"arrival": _arrival, "lengths": _lengths}
_documents = st.one_of(
    yaml_documents(WORKLOAD_KEYS),
    st.fixed_dictionaries({"adapters": st.lists(_adapter, max_size=4)}, optional=_sections),
    st.fixed_dictionaries({"layout": _layout}, optional=_sections),
)


@FUZZ
@given(_documents)
def test_workload_yaml_from_documents_of_its_own_keys(document):
    load_yaml_text(yaml.safe_dump(document, allow_unicode=True).encode())


def load_trace_files(trace: bytes, adapters: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "trace.csv").write_bytes(trace)
        (Path(directory) / "adapters.csv").write_bytes(adapters)
        try:
            workload, requests = load_trace(directory)
        except InputError:
            return
    check_workload(workload)
    assert len(requests) > 0 and np.all(np.diff(requests.arrival_s) >= 0) and np.all(requests.arrival_s >= 0)
    assert np.all(np.isfinite(requests.arrival_s))
    assert np.all(requests.prompt_tokens >= 1) and np.all(requests.output_tokens >= 1)
    assert requests.adapter.min() >= 0 and requests.adapter.max() < len(workload.adapters)


@FUZZ
@given(any_bytes(), any_bytes())
@example(f"{','.join(TRACE_HEADER)}\n0,{'x' * 200_000},1,1\n".encode(), b"adapter_id,rank\na,8\n")
def test_trace_from_any_bytes(trace, adapters):
    load_trace_files(trace, adapters)


_ids = ["a", "b", " a", "A"]


@FUZZ
@given(
    csv_text(TRACE_HEADER, vocabulary=[*_ids, "0.5", "1", "100"]),
    st.one_of(csv_text(ADAPTERS_HEADER, vocabulary=_ids), csv_text((*ADAPTERS_HEADER, "rate"), vocabulary=_ids)),
)
def test_trace_from_files_of_its_own_words(trace, adapters):
    load_trace_files(trace.encode("utf-8", "surrogatepass"), adapters.encode("utf-8", "surrogatepass"))

"""Invariants of the twin on random small workloads (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loratwin.profiles import Profile
from loratwin.twin import ServerConfig, simulate
from loratwin.twin.result import RunResult
from loratwin.workload import RequestTable, WorkloadSpec

from .conftest import BLOCK, make_profile, make_workload

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Case:
    workload: WorkloadSpec
    table: RequestTable
    server: ServerConfig
    profile: Profile
    step_max_ms: float  # an upper bound on one step's duration
    min_step_ms: float

    def run(self, duration_s: float) -> RunResult:
        return simulate(self.workload, self.server, self.profile, duration_s=duration_s, requests=self.table)

    @property
    def long_window_s(self) -> float:
        # Every step advances the oldest running request by >= 1 token and that request is never
        # reset (victims are taken from the end; it fits alone), so all requests are done after at
        # most sum(prompt + output) steps past the last arrival.
        work = int(self.table.prompt_tokens.sum() + self.table.output_tokens.sum())
        return float(self.table.arrival_s.max()) + work * self.step_max_ms / 1e3 + 0.01


@st.composite
def cases(draw) -> Case:
    n_adapters = draw(st.integers(1, 6))
    ranks = draw(st.lists(st.sampled_from([8, 16]), min_size=n_adapters, max_size=n_adapters))
    n_req = draw(st.integers(1, 60))
    span_us = draw(st.sampled_from([0, 1_000, 50_000, 500_000, 3_000_000]))
    arrivals_us = sorted(draw(st.lists(st.integers(0, span_us), min_size=n_req, max_size=n_req)))
    reqs = [
        (
            t / 1e6,
            draw(st.integers(0, n_adapters - 1)),
            draw(st.integers(4, 300)),
            draw(st.integers(4, 200)),
        )
        for t in arrivals_us
    ]
    max_loras = draw(st.integers(1, n_adapters))
    # None: vLLM's default here (all served adapters); max_loras: the smallest CPU cache
    max_cpu_loras = draw(st.one_of(st.none(), st.just(max_loras), st.integers(max_loras, n_adapters)))
    max_num_seqs = draw(st.integers(1, 16))
    max_num_batched_tokens = draw(st.integers(max(16, max_num_seqs), 512))
    client_max_waiting = draw(st.none() | st.integers(1, 20))
    # small KV cache: every request fits alone (with 2 blocks to spare), several rarely do
    need = max(BLOCK * math.ceil((p + o) / BLOCK) + 2 * BLOCK for _, _, p, o in reqs)
    kv_tokens = need + draw(st.integers(0, 800))
    gpu_load_ms = draw(st.sampled_from([0.0, 0.5, 3.0]))
    disk_load_ms = draw(st.sampled_from([0.0, 2.0, 10.0]))
    per_seq_ms = draw(st.sampled_from([0.0, 0.05]))
    profile = make_profile(kv_tokens, gpu_load_ms=gpu_load_ms, disk_load_ms=disk_load_ms, per_seq_ms=per_seq_ms)
    workload, table = make_workload(reqs, ranks=ranks)
    server = ServerConfig(
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        client_max_waiting=client_max_waiting,
    )
    step_max_ms = 1.0 + per_seq_ms * max_num_seqs + max_loras * (gpu_load_ms + disk_load_ms)
    return Case(workload, table, server, profile, step_max_ms, 1.0)


@pytest.fixture(scope="module", autouse=True)
def _warm(warm_engine):
    return None


def check_invariants(case: Case, r: RunResult, duration_s: float) -> None:
    req, steps, s = r.requests, r.steps, r.summary
    srv = r.config["server"]
    n = len(req["arrival_s"])
    prompt, output = req["prompt_tokens"], req["output_tokens"]
    done = req["completed"]
    budget = srv["max_num_batched_tokens"]

    # --- tokens conserved
    assert np.all(req["generated_tokens"][done] == output[done])
    assert np.all(req["generated_tokens"] <= output)
    assert np.all(req["generated_tokens"] >= 0)
    assert s["completed"] == int(done.sum()) <= s["arrived"] == n
    assert s["unfinished"] == n - s["completed"]
    assert s["input_tok_s"] * duration_s == pytest.approx(int(prompt[done].sum()), rel=1e-12, abs=1e-9)
    assert s["output_tok_s"] * duration_s == pytest.approx(int(output[done].sum()), rel=1e-12, abs=1e-9)
    # throughput never exceeds what arrived
    offered = int(prompt.sum() + output.sum())
    assert s["offered_tok_s"] * duration_s == pytest.approx(offered, rel=1e-12)
    assert s["total_tok_s"] <= s["offered_tok_s"] * (1 + 1e-12)
    assert s["preemptions"] == int(req["preemptions"].sum())
    assert s["adapter_loads_cpu_to_gpu"] == sum(a["loads_cpu_to_gpu"] for a in r.adapters)
    assert s["adapter_loads_disk_to_cpu"] == sum(a["loads_disk_to_cpu"] for a in r.adapters)
    assert s["adapter_loads_disk_to_cpu"] <= s["adapter_loads_cpu_to_gpu"]

    # --- per step limits
    num_blocks = int(round(srv["kv_cache_tokens"] / BLOCK))
    assert s["steps"] == len(steps["end_s"])
    if s["steps"]:
        assert steps["kv_blocks"].max() <= num_blocks
        assert steps["kv_blocks"].min() >= 1  # the null block
        assert steps["adapters"].max() <= srv["max_loras"]
        assert steps["batch"].max() <= srv["max_num_seqs"]
        assert steps["batch"].min() >= 1  # every request fits alone: no empty step
        assert np.all(steps["adapters"] <= steps["batch"])
        assert np.all(np.diff(steps["end_s"]) > 0)
        assert np.all(np.diff(steps["end_s"]) >= case.min_step_ms / 1e3 - 1e-12)

    # --- per request times (completed requests)
    arrival, sent, first, finish = req["arrival_s"], req["sent_s"], req["first_token_s"], req["finish_s"]
    assert np.all(sent[done] >= arrival[done])
    assert np.all(first[done] > sent[done])
    assert np.all(first[done] <= finish[done])
    assert np.all(finish[done] <= duration_s + 1e-12)
    assert np.all(np.isnan(finish[~done]) | (finish[~done] > duration_s))
    # the prompt takes >= ceil(prompt / budget) steps, then one output token per step at most
    min_prefill_s = np.ceil(prompt / budget) * case.min_step_ms / 1e3
    assert np.all(first[done] - arrival[done] >= min_prefill_s[done] - 1e-9)
    assert np.all(finish[done] - first[done] >= (output[done] - 1) * case.min_step_ms / 1e3 - 1e-9)
    # anything that was sent has a sent time at or after its arrival, the rest nothing
    has_sent = ~np.isnan(sent)
    assert s["sent"] == int(has_sent.sum())
    assert np.all(sent[has_sent] >= arrival[has_sent])
    assert np.all(np.isnan(first[~has_sent]))
    # without a client cap every arrival is sent at its arrival time
    if srv["client_max_waiting"] is None:
        assert np.all(sent[has_sent] == arrival[has_sent])

    # --- no request completes twice: each finish (and first token) is the end of one step, and
    # a step finishes at most as many requests as it holds
    ends_ns = np.round(steps["end_s"] * 1e9).astype(np.int64)
    fin_ns = np.round(finish[done] * 1e9).astype(np.int64)
    first_ns = np.round(first[~np.isnan(first)] * 1e9).astype(np.int64)
    assert np.isin(fin_ns, ends_ns).all()
    assert np.isin(first_ns, ends_ns).all()
    if fin_ns.size:
        idx = np.searchsorted(ends_ns, fin_ns)
        per_step = np.bincount(idx, minlength=len(ends_ns))
        assert np.all(per_step <= steps["batch"])


def assert_same_run(a: RunResult, b: RunResult) -> None:
    assert a.summary == b.summary
    for name, column in a.requests.items():
        np.testing.assert_array_equal(b.requests[name], column, err_msg=name)
    for name, column in a.steps.items():
        np.testing.assert_array_equal(b.steps[name], column, err_msg=name)


@SETTINGS
@given(case=cases(), duration_s=st.sampled_from([0.005, 0.05, 0.3, 1.0, 3.0]))
def test_invariants_in_a_random_window(case: Case, duration_s: float) -> None:
    if not (case.table.arrival_s < duration_s).any():
        duration_s = 3.0
    r = case.run(duration_s)
    check_invariants(case, r, duration_s)
    # determinism: the same inputs give the same run
    assert_same_run(r, case.run(duration_s))


@SETTINGS
@given(case=cases())
def test_every_request_completes_in_a_long_enough_window(case: Case) -> None:
    duration_s = case.long_window_s
    r = case.run(duration_s)
    check_invariants(case, r, duration_s)
    assert r.summary["completed"] == r.summary["arrived"] == len(case.table)
    np.testing.assert_array_equal(r.requests["generated_tokens"], r.requests["output_tokens"])
    assert r.summary["total_tok_s"] == pytest.approx(r.summary["offered_tok_s"])

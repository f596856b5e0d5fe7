"""The cluster twin: router rules by hand, and replicas that equal the single-GPU twin exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loratwin.errors import InputError
from loratwin.twin import ServerConfig, simulate
from loratwin.twin.cluster import ROUTERS, ClusterSpec, Replica, check_cluster_run, even_routing, simulate_cluster
from loratwin.twin.cluster.routing import affinity_spills, least_outstanding, weighted_routes
from loratwin.workload import RequestTable

from .conftest import make_profile, make_workload

PROFILE = make_profile()  # every step lasts 1 ms


def cluster(workload, held: list[list[int]], routing=None, max_loras: int = 2) -> ClusterSpec:
    replicas = tuple(Replica(f"GPU {g}", ServerConfig(max_loras=min(max_loras, len(ids))), tuple(f"a{i}" for i in ids))
                     for g, ids in enumerate(held))
    return ClusterSpec(workload, replicas, routing or even_routing(replicas))


def replica_requests(table: RequestTable, routes: np.ndarray, spec: ClusterSpec, r: int) -> RequestTable:
    """The requests routed to replica r, with its own adapter numbering."""
    index = spec.workload.adapter_index()
    local = np.full(len(spec.workload.adapters), -1)
    for position, a in enumerate(spec.replicas[r].adapters):
        local[index[a]] = position
    idx = np.flatnonzero(routes == r)
    return RequestTable(arrival_s=table.arrival_s[idx], adapter=local[table.adapter[idx]].astype(np.int32),
                        prompt_tokens=table.prompt_tokens[idx], output_tokens=table.output_tokens[idx])


# --- the rules

def test_least_outstanding_picks_the_fewest_and_the_first_on_ties():
    assert least_outstanding(np.array([3, 0, 2])) == 1
    assert least_outstanding(np.array([1, 1, 1])) == 0


def test_affinity_spills_only_above_the_threshold():
    assert not affinity_spills(5, 5)
    assert affinity_spills(6, 5)
    assert not affinity_spills(0, 0)


def test_weighted_routes_respect_the_weights_in_the_limit_and_the_seed():
    adapter = np.zeros(200_000, np.int64)
    adapter[::2] = 1
    weights = [{0: 0.2, 1: 0.3, 2: 0.5}, {2: 1.0}]
    routes = weighted_routes(adapter, weights, seed=3)
    shares = np.bincount(routes[adapter == 0], minlength=3) / (adapter == 0).sum()
    assert np.allclose(shares, [0.2, 0.3, 0.5], atol=0.006)
    assert (routes[adapter == 1] == 2).all()
    assert np.array_equal(routes, weighted_routes(adapter, weights, seed=3))
    assert not np.array_equal(routes, weighted_routes(adapter, weights, seed=4))


# --- stateful routing, by hand (1 ms steps)

def _busy_then_shared(n_busy: int):
    """n_busy long requests of a1 (only on GPU 0) at t=0, then one of a0 (on both GPUs) at 50 ms."""
    reqs = [(0.0, 1, 4, 400)] * n_busy + [(0.05, 0, 4, 4)]
    return make_workload(reqs, n_adapters=2)


def test_least_outstanding_sends_to_the_idle_replica():
    workload, table = _busy_then_shared(1)
    spec = cluster(workload, [[0, 1], [0]])
    result = simulate_cluster(spec, PROFILE, router="least-outstanding", duration_s=1.0, requests=table)
    assert result.routes.tolist() == [0, 1]  # GPU 0 has one outstanding, GPU 1 none
    # weights do not matter to it: the home (GPU 0) is passed over as well
    spec = cluster(workload, [[0, 1], [0]], routing={"a0": {0: 0.9, 1: 0.1}, "a1": {0: 1.0}})
    assert simulate_cluster(spec, PROFILE, router="least-outstanding", duration_s=1.0,
                            requests=table).routes.tolist() == [0, 1]


def test_a_finished_request_is_not_outstanding():
    # the a1 request finishes after ~5 steps, well before a0 arrives: both GPUs idle, the first wins
    workload, table = make_workload([(0.0, 1, 4, 4), (0.05, 0, 4, 4)], n_adapters=2)
    spec = cluster(workload, [[0, 1], [0]])
    assert simulate_cluster(spec, PROFILE, router="least-outstanding", duration_s=1.0,
                            requests=table).routes.tolist() == [0, 0]


@pytest.mark.parametrize(("n_busy", "home"), [(2, 0), (3, 1)])
def test_affinity_stays_home_up_to_the_threshold(n_busy, home):
    workload, table = _busy_then_shared(n_busy)
    spec = cluster(workload, [[0, 1], [0]], routing={"a0": {0: 0.6, 1: 0.4}, "a1": {0: 1.0}}, max_loras=2)
    result = simulate_cluster(spec, PROFILE, router="affinity", spill_threshold=2, duration_s=1.0, requests=table)
    assert result.routes.tolist() == [0] * n_busy + [home]


# --- exactness

def test_one_gpu_holding_everything_is_the_single_twin():
    from loratwin import reference_layout

    workload = reference_layout(6, [0.8, 0.4], [8, 16], seed=0)
    server = ServerConfig(max_loras=2)
    single = simulate(workload, server, "llama-3.1-8b-instruct", duration_s=60, seed=5)
    spec = ClusterSpec(workload, (Replica("GPU 0", server, tuple(a.id for a in workload.adapters)),),
                       {a.id: {0: 1.0} for a in workload.adapters})
    for router in ROUTERS:
        one = simulate_cluster(spec, "llama-3.1-8b-instruct", router=router, duration_s=60, seed=5, workers=1)
        assert one.replicas[0].summary == single.summary, router
        assert one.replicas[0].adapters == single.adapters, router


@st.composite
def clusters(draw):
    n_adapters = draw(st.integers(2, 4))
    n_replicas = draw(st.integers(1, 3))
    held = [[] for _ in range(n_replicas)]
    for a in range(n_adapters):
        for r in draw(st.sets(st.integers(0, n_replicas - 1), min_size=1, max_size=n_replicas)):
            held[r].append(a)
    held = [h for h in held if h]
    n = draw(st.integers(1, 40))
    times = sorted(draw(st.lists(st.floats(0, 0.5), min_size=n, max_size=n)))
    reqs = [(t, draw(st.integers(0, n_adapters - 1)), draw(st.integers(1, 300)), draw(st.integers(1, 60)))
            for t in times]
    return make_workload(reqs, n_adapters=n_adapters), held, draw(st.sampled_from(ROUTERS)), draw(st.integers(0, 3))


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=clusters())
def test_routes_hold_the_adapter_and_every_replica_is_the_single_twin(case):
    (workload, table), held, router, threshold = case
    profile = make_profile(kv_tokens=2048, per_seq_ms=0.5)  # a small KV cache: preemptions happen
    spec = cluster(workload, held, max_loras=1)
    result = simulate_cluster(spec, profile, router=router, duration_s=0.6, requests=table, spill_threshold=threshold,
                              workers=1)
    for i, r in enumerate(result.routes):
        assert f"a{table.adapter[i]}" in spec.replicas[r].adapters
    for r, replica in enumerate(spec.replicas):
        alone = simulate(workload.model_copy(update={"adapters": tuple(
            workload.adapters[int(a[1:])] for a in replica.adapters)}), replica.server, profile, duration_s=0.6,
            requests=replica_requests(table, result.routes, spec, r))
        got = result.replicas[r]
        assert got.summary == alone.summary
        assert got.adapters == alone.adapters
        for name, column in alone.requests.items():
            np.testing.assert_array_equal(got.requests[name], column)


def test_a_log_that_fills_is_grown_and_the_run_goes_on(monkeypatch):
    workload, table = make_workload([(0.001 * i, i % 2, 20, 30) for i in range(60)], n_adapters=2)
    spec = cluster(workload, [[0, 1], [0, 1]])
    roomy = simulate_cluster(spec, PROFILE, router="least-outstanding", duration_s=1.0, requests=table)
    from loratwin.twin.cluster import lockstep

    grown = []
    real_grow = lockstep.ReplicaRun.grow
    monkeypatch.setattr(lockstep.ReplicaRun, "grow", lambda self: (grown.append(1), real_grow(self)))
    monkeypatch.setattr(lockstep, "log_caps", lambda *a, **k: {1: 2, 2: 1, 3: 1, 4: 1})
    tight = simulate_cluster(spec, PROFILE, router="least-outstanding", duration_s=1.0, requests=table)
    assert grown  # the logs did fill
    assert np.array_equal(tight.routes, roomy.routes)
    for a, b in zip(tight.replicas, roomy.replicas):
        assert a.summary == b.summary


# --- reports and refusals

def test_reports_add_up():
    workload, table = make_workload([(0.01 * i, i % 3, 8, 8) for i in range(30)], n_adapters=3)
    spec = cluster(workload, [[0, 1], [1, 2]])
    result = simulate_cluster(spec, PROFILE, router="weighted-random", duration_s=1.0, requests=table, workers=1)
    doc = result.to_dict()
    assert doc["cluster"]["requests"] == 30 == sum(g["requests"] for g in doc["gpus"])
    assert sum(a["requests"] for a in doc["adapters"]) == 30
    a1 = next(a for a in doc["adapters"] if a["adapter_id"] == "a1")
    assert sum(a1["split"].values()) == 10 and set(a1["split"]) <= {"GPU 0", "GPU 1"}
    assert doc["cluster"]["served_share"] == pytest.approx(result.total_tok_s / result.offered_tok_s)


@pytest.mark.parametrize(("routing", "message"), [
    ({"a0": {0: 0.5, 1: 0.6}, "a1": {1: 1.0}}, "must sum to 1"),
    ({"a0": {0: 1.0}, "a1": {0: 1.0}}, "which does not hold it"),
    ({"a0": {0: 0.5, 1: 0.5}}, "adapters of the workload with no replica: a1"),
    ({"a0": {0: 1.5, 1: -0.5}, "a1": {1: 1.0}}, "must be > 0"),
])
def test_a_bad_cluster_is_refused(routing, message):
    workload, _ = make_workload([(0.0, 0, 4, 4)], n_adapters=2)
    replicas = (Replica("GPU 0", ServerConfig(max_loras=1), ("a0",)), Replica("GPU 1", ServerConfig(max_loras=1), ("a0", "a1")))
    with pytest.raises(InputError, match=message):
        ClusterSpec(workload, replicas, routing)


def test_an_unknown_router_is_refused():
    workload, table = make_workload([(0.0, 0, 4, 4)], n_adapters=1)
    with pytest.raises(InputError, match="--router must be one of"):
        simulate_cluster(cluster(workload, [[0]]), PROFILE, router="round-robin", duration_s=1.0, requests=table)


def test_a_spill_threshold_beyond_64_bits_is_refused():
    workload, table = make_workload([(0.0, 0, 4, 4)], n_adapters=1)
    with pytest.raises(InputError, match="--spill-threshold must be an integer from 0 to 9223372036854775807"):
        simulate_cluster(cluster(workload, [[0]]), PROFILE, router="affinity", duration_s=1.0, requests=table,
                         spill_threshold=2**63)


def test_a_replica_vllm_refuses_is_named_before_anything_runs():
    workload, table = make_workload([(0.0, 0, 4, 4)], n_adapters=2)
    replicas = (Replica("GPU 0", ServerConfig(max_loras=2, max_cpu_loras=1), ("a0", "a1")),)
    spec = ClusterSpec(workload, replicas, even_routing(replicas))
    with pytest.raises(InputError, match=r"^GPU 0: --max-cpu-loras \(1\) must be >= --max-loras \(2\)"):
        check_cluster_run(spec, PROFILE, duration_s=1.0, requests=table)
    with pytest.raises(InputError, match=r"^p.yaml: gpus\[0\] \(GPU 0\): --max-cpu-loras"):
        check_cluster_run(spec, PROFILE, duration_s=1.0, requests=table, source="p.yaml")
    with pytest.raises(InputError, match="^GPU 0: --max-cpu-loras"):
        simulate_cluster(spec, PROFILE, duration_s=1.0, requests=table)
    assert check_cluster_run(cluster(workload, [[0, 1]]), PROFILE, requests=table) > 0  # the trace's window


@pytest.mark.slow
def test_ray_and_local_processes_give_the_same_result():
    pytest.importorskip("ray")
    workload, table = make_workload([(0.01 * i, i % 3, 8, 8) for i in range(30)], n_adapters=3)
    spec = cluster(workload, [[0, 1], [1, 2]])
    local = simulate_cluster(spec, PROFILE, duration_s=1.0, requests=table, workers=2)
    on_ray = simulate_cluster(spec, PROFILE, duration_s=1.0, requests=table, workers=1, use_ray=True)
    assert np.array_equal(local.routes, on_ray.routes)
    assert [r.summary for r in local.replicas] == [r.summary for r in on_ray.replicas]


def test_affinity_never_spills_to_a_busier_replica():
    # a2 lives on GPU 1 only and loads it with 4 outstanding requests; a0's home is GPU 0: its third
    # request finds home past the threshold (2 > 1) but GPU 1 busier (4): it stays home
    rows = [(0.0, 2, 4, 40)] * 4 + [(0.001, 0, 4, 40), (0.002, 0, 4, 40), (0.003, 0, 4, 40)]
    workload, table = make_workload(rows, n_adapters=3)
    spec = cluster(workload, [[0, 1], [0, 1, 2]],
                   routing={"a0": {0: 0.6, 1: 0.4}, "a1": {0: 0.5, 1: 0.5}, "a2": {1: 1.0}}, max_loras=2)
    result = simulate_cluster(spec, PROFILE, router="affinity", spill_threshold=1, duration_s=1.0, requests=table)
    assert result.routes.tolist() == [1, 1, 1, 1, 0, 0, 0]

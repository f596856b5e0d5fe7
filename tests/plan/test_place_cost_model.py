"""The cost-model check's wait for a place in the batch, its window rule, `max_wait_s`, and the
lower bound it gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from loratwin import AdapterSpec, load_profile
from loratwin.errors import InputError
from loratwin.plan.bound import cost_model as place_bound
from loratwin.plan.judge import DEFAULT_MAX_WAIT_S, AcceptanceRule, CostModelCheck, adapter_server_rank
from loratwin.plan.judge.cost_model import kv_queue_share
from loratwin.plan.judge.cost_model.busy_periods import MU_GRID, BatchStartBusyPeriods, batch_extra
from loratwin.plan.judge.cost_model.lengths import LengthMoments
from loratwin.plan.judge.slots import kv_tokens_or_none
from loratwin.plan.placement import place
from loratwin.twin import ServerConfig, simulate
from loratwin.workload import LengthSpec, WorkloadSpec, reference_layout, zipf_layout

from .conftest import load_at_kv_use, resident_share

PROFILE = "llama-3.1-8b-instruct"


def same_adapters(n: int, rate: float, rank: int = 32) -> list[AdapterSpec]:
    return [AdapterSpec(id=f"a{i}", rank=rank, rate_req_s=rate) for i in range(n)]


def cost_model(max_wait_s: float | None = DEFAULT_MAX_WAIT_S, window_s: float = 3600.0, **options) -> CostModelCheck:
    """The cost model judged by a rule with this wait limit and window."""
    return CostModelCheck(rule=AcceptanceRule(max_wait_s=max_wait_s, window_s=window_s), **options)


def fractional_bound(check: CostModelCheck, adapters, profile) -> float:
    """The cost model's fractional lower bound on the GPUs of any placement `check` accepts."""
    need = np.array([adapter_server_rank(profile, a) for a in adapters], np.float64)
    rates = np.array([a.rate_req_s for a in adapters], np.float64)
    return place_bound.cost_model_lower_bound(check, rates, need, profile)


# length moments where every busy period starts with one request (no batch-start extra): the
# closed forms below hold for it; only the output length matters to the slot state
Moments = LengthMoments(prompt=223.0, output_asked=199.0, output=199.0, context=320.0)


def test_slot_state_has_no_wait_while_places_suffice():
    values, counts = np.array([0.05]), np.array([10.0])
    state = CostModelCheck._slot_state(values, counts, np.array([50.0]), np.array([16.0]), Moments, np.zeros(1))
    run_s = 200 * 0.05
    assert state["wait"][0] == 0.0
    assert state["active"][0] == pytest.approx(10 * (1 - math.exp(-0.05 * run_s)))


def test_slot_state_wait_for_identical_adapters_has_a_closed_form():
    # n B / (1/λ + W + B) = S  =>  W = n B / S - 1/λ - B
    lam, n, slots = 0.1, 100.0, 8.0
    tau = np.array([40.0])
    run_s = 200 * 0.040
    busy_period = math.expm1(lam * run_s) / lam
    state = CostModelCheck._slot_state(np.array([lam]), np.array([n]), tau, np.array([slots]), Moments, np.zeros(1))
    assert state["wait"][0] == pytest.approx(n * busy_period / slots - 1 / lam - busy_period, rel=1e-6)
    assert state["active"][0] == pytest.approx(slots)
    assert state["visits"][0] == pytest.approx(slots / busy_period, rel=1e-6)


@given(st.lists(st.floats(0.001, 5.0), min_size=1, max_size=40), st.floats(5.0, 200.0))
@settings(max_examples=60, deadline=None)
def test_slot_state_wait_shrinks_as_places_grow(rates, tau):
    values, counts = np.unique(np.asarray(rates), return_counts=True)
    slots = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    state = CostModelCheck._slot_state(values, counts.astype(float), np.full(7, tau), slots, Moments, np.zeros(7))
    assert np.all(np.diff(state["wait"]) <= 1e-9 * (1 + state["wait"][:-1]))
    assert np.all(state["active"] <= slots + 1e-9)
    assert np.all(state["wait"] >= 0)


def test_the_added_busy_period_has_closed_forms():
    # at ρ = 0 (no arrivals while running) the busy period is the longest of the requests that
    # waited: lengths 1 and 3 equally likely, K = 1 + Poisson(μ): E[max] = 3 - e^(-μ/2), mean 2
    lengths = np.array([1.0, 3.0] * 50)
    assert batch_extra(lengths, [0.0], MU_GRID)[0] == pytest.approx((3 - np.exp(-MU_GRID / 2)) / 2 - 1, abs=1e-12)
    # equal lengths: the waiting requests end with the first one, whatever the load
    assert batch_extra(np.full(10, 7.0), [0.0, 1.0, 5.0], MU_GRID) == pytest.approx(0.0, abs=1e-9)


def test_the_added_busy_period_matches_a_simulation():
    """M/G/inf started with 1 + Poisson(μ) requests, Poisson(ρ) arrivals per mean run time."""
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(0.0, 0.8, 400)
    run = lengths / lengths.mean()
    table = BatchStartBusyPeriods(lengths)
    for rho, mu in ((0.3, 1.0), (1.5, 3.0)):
        busy = []
        for _ in range(20_000):
            end, t = rng.choice(run, 1 + rng.poisson(mu)).max(), 0.0
            while (t := t + rng.exponential(1 / rho)) < end:
                end = max(end, t + rng.choice(run))
            busy.append(end)
        extra = table.extra(table.locate(np.array([rho])), np.array([mu]))[0][0]
        assert np.expm1(rho) / rho + extra == pytest.approx(np.mean(busy), rel=0.02)


@given(st.floats(20.0, 600.0), st.floats(10.0, 900.0))
@settings(max_examples=15, deadline=None)
def test_a_place_is_held_for_a_smaller_share_as_the_wait_grows(mean_prompt, mean_output):
    """The lower bound prices a place at the longest accepted wait: right only while the share of
    time held, B(W) / (1/λ + W + B(W)), shrinks as W grows: (1 + μ) ∂e/∂μ < B1/T + e."""
    m = CostModelCheck(lengths=LengthSpec(mean_prompt_tokens=mean_prompt, mean_output_tokens=mean_output)).moments(
        load_profile(PROFILE))
    mu = np.logspace(-4, 4, 400)
    for rho in (0.0, 0.3, 1.0, 3.0, 8.0, 11.9):
        extra, slope = m.batch_extra(m.locate(np.full(len(mu), rho)), mu)
        single = np.expm1(rho) / rho if rho else 1.0
        assert np.all((1 + mu) * slope < single + extra)


def test_slot_state_busy_period_grows_with_the_requests_that_waited(profile):
    """With the batch-start busy period, W still solves sum u(W) = S, and it is longer than where
    each busy period starts with one request."""
    m = CostModelCheck().moments(profile)
    lam, n, slots, tau = 0.02, 300.0, 64.0, np.array([120.0])
    state = CostModelCheck._slot_state(np.array([lam]), np.array([n]), tau, np.array([slots]), m, np.zeros(1))
    single = CostModelCheck._slot_state(np.array([lam]), np.array([n]), tau, np.array([slots]), Moments, np.zeros(1))
    wait, run_s = state["wait"][0], state["run_s"][0]
    rho = lam * run_s
    extra = batch_extra_exact(m, rho, lam * wait)
    busy = math.expm1(rho) / lam + run_s * extra
    assert n * busy / (1 / lam + wait + busy) == pytest.approx(slots, rel=1e-3)
    assert wait > 1.2 * single["wait"][0]


@given(st.lists(st.floats(0.001, 2.0), min_size=2, max_size=60), st.floats(5.0, 200.0), st.integers(1, 16))
@settings(max_examples=40, deadline=None)
def test_the_compiled_wait_solves_the_places_equation_with_the_tables_lookup(rates, tau_ms, slots):
    """The compiled solver's W meets sum count u(W) = S when u is evaluated by the numpy lookup
    of the busy-period table (its own lookup is a copy of that interpolation)."""
    m = CostModelCheck().moments(load_profile(PROFILE))
    values, counts = np.unique(np.asarray(rates), return_counts=True)
    counts = counts.astype(float)
    tau, S = np.array([tau_ms]), np.array([float(slots)])
    state = CostModelCheck._slot_state(values, counts, tau, S, m, np.zeros(1))
    wait, run_s = state["wait"][0], state["run_s"][0]
    x = np.minimum(values * run_s, 700.0)
    single = np.expm1(x) / values
    if counts @ (single / (1 / values + single)) <= slots:
        assert wait == 0.0
        return
    assume(wait < 1e7)  # capped far out: the places stay over-full at any wait that matters
    extra = m.batch_extra(m.locate(x), values * wait)[0]
    busy = single + run_s * extra
    assert counts @ (busy / (1 / values + wait + busy)) == pytest.approx(slots, rel=1e-4)


def batch_extra_exact(m, rho, mu):
    return float(m.batch_extra(m.locate(np.array([rho])), np.array([mu]))[0][0])


def test_the_accelerated_fixed_point_is_the_plain_one(profile):
    check = CostModelCheck()
    m = check.moments(profile)
    slots = np.array([8.0, 16.0, 32.0, 64.0, 96.0, 128.0])
    n_cap = np.array([kv_tokens_or_none(profile, int(s), 16) / (m.context + 8) for s in slots])
    for total, n in ((20.0, 300), (35.0, 60), (8.0, 1200)):
        rates = np.array([a.rate_req_s for a in zipf_layout(n, total, 1.0, ranks=(16,), seed=1).adapters])
        fast = check._fixed_point(rates, slots, n_cap, 16, 6.0, profile, m)
        plain = check._fixed_point(rates, slots, n_cap, 16, 6.0, profile, m, accelerate=False)
        settled = np.isfinite(plain[1])  # the columns that did not diverge (running = inf)
        assert np.array_equal(settled, np.isfinite(fast[1])) and settled.any()
        for f, p in zip(fast, plain):
            assert f[settled] == pytest.approx(p[settled], rel=1e-3, abs=1e-6)


def test_saturated_batch_matches_the_twin(profile):
    """200 quiet rank-32 adapters on 96 places: the places stay full, requests wait for one, and
    the twin keeps up. The model's step time and wait follow the twin's ITL and TTFT."""
    share = same_adapters(200, 0.0625)
    check = cost_model(max_wait_s=None, window_s=3600.0)
    m = check.moments(profile)
    rates = np.array([a.rate_req_s for a in share])
    slots = np.array([96.0])
    n_kv = kv_tokens_or_none(profile, 96, 32) / (m.context + profile.kv.block_size / 2)
    tau, running, active, wait, _ = check._fixed_point(rates, slots, np.array([n_kv]), 32, 6.4, profile, m)
    result = simulate(WorkloadSpec(adapters=tuple(share)), ServerConfig(max_loras=96, max_cpu_loras=200, max_lora_rank=32),
                      profile, duration_s=3600.0, seed=0)
    assert not result.starved
    assert active[0] == pytest.approx(96)
    assert tau[0] == pytest.approx(result.summary["mean_itl_ms"], rel=0.10)
    assert running[0] == pytest.approx(result.summary["mean_running"], rel=0.15)
    # the wait of a request whose adapter holds no place: the twin's idle-start TTFT
    assert wait[0] == pytest.approx(result.idle_start_ttft_s, rel=0.25)
    option = next(o for o in check.evaluate(share, profile).options if o.max_loras == 96)
    assert option.accepted and option.wait_s == pytest.approx(wait[0], rel=0.01)


def _resident_option(profile, total_req_s: float, **rule_args):
    """A `resident_share` and the cost model's option at max_loras = its adapter count, judged by
    the rule with `rule_args`."""
    share = resident_share(total_req_s)
    check = CostModelCheck(rule=AcceptanceRule(**rule_args), slot_grid=(len(share),))
    return share, check.evaluate(share, profile).options[0]


def _twin_mean_ttft_s(profile, share, hours: float) -> float:
    server = ServerConfig(max_loras=len(share), max_cpu_loras=len(share), max_lora_rank=8)
    run = simulate(WorkloadSpec(adapters=tuple(share)), server, profile, duration_s=hours * 3600.0, seed=0)
    assert not run.starved
    return run.mean_ttft_s


def test_the_kv_queue_grows_towards_capacity_and_a_tight_wait_limit_refuses_it(profile):
    """Every adapter has a place, so only the KV admission queue can make requests wait: a second
    or less well below KV capacity, tens of percent of a run near it. Without the utilisation
    limit, --max-wait 10 refuses the latter where the default minute accepts it, and the twin's
    mean TTFT there is over 5 s."""
    assert kv_queue_share(1.0, profile) == pytest.approx(profile.placement.kv_queue_scale)
    assert np.all(np.diff(kv_queue_share(np.linspace(0.5, 1.0, 11), profile)) > 0)

    def option(total, **rule_args):
        return _resident_option(profile, total, max_kv_use=1.0, **rule_args)

    light = option(24.0)[1]
    assert light.prediction.kv_use < 0.5 and light.queue_s < 0.1 and light.wait_s == 0.0
    load = load_at_kv_use(lambda rate: option(rate)[1].prediction.kv_use, 0.99)
    share, near = option(load)
    assert 0.985 < near.prediction.kv_use < 0.99 and near.queue_s > 10.0 and near.accepted
    assert not option(load, max_wait_s=10.0)[1].accepted
    assert _twin_mean_ttft_s(profile, share, 1) > 5.0


@pytest.mark.slow
def test_the_check_refuses_a_kv_use_whose_queue_never_settles(profile):
    """Above the profile's stable KV use (`profile.placement.stable_kv_use`) the twin's queue for KV
    admission grows for as long as the load lasts (the hour's window hides it); just below it, the
    queue settles."""
    stable = profile.placement.stable_kv_use

    def kv_use_at(rate):
        return _resident_option(profile, rate)[1].prediction.kv_use

    over, kept = load_at_kv_use(kv_use_at, 0.99), load_at_kv_use(kv_use_at, stable)
    share, refused = _resident_option(profile, over)
    assert not refused.accepted and refused.pressure == pytest.approx(refused.prediction.kv_use / stable)
    assert _resident_option(profile, over, max_kv_use=1.0)[1].accepted  # the hour's queue alone would pass it
    short, long = (_twin_mean_ttft_s(profile, share, hours) for hours in (2, 8))
    assert long > 1.5 * short + 2.0
    share, accepted = _resident_option(profile, kept)
    assert accepted.accepted and accepted.prediction.kv_use > stable - 0.005
    short, long = (_twin_mean_ttft_s(profile, share, hours) for hours in (2, 8))
    assert long < 1.5 * short + 2.0


def test_a_longer_window_accepts_longer_waits_and_max_wait_caps_them(profile):
    share = same_adapters(150, 0.0625, rank=8)
    hour = cost_model(max_wait_s=None, window_s=3600.0).evaluate(share, profile)
    quarter = cost_model(max_wait_s=None, window_s=900.0).evaluate(share, profile)
    capped = cost_model(max_wait_s=1.0, window_s=3600.0).evaluate(share, profile)
    for h, q, c in zip(hour.options, quarter.options, capped.options):
        assert h.wait_s == pytest.approx(q.wait_s) == pytest.approx(c.wait_s)
        assert min(1.0, h.pressure) <= min(1.0, q.pressure) + 1e-12
        if q.accepted:
            assert h.accepted
        if h.wait_s > 1.0:
            assert not c.accepted
    assert any(o.accepted and o.wait_s > 1.0 for o in hour.options), "the hour allows waits the cap refuses"


def test_max_wait_needs_more_gpus(profile):
    workload = zipf_layout(300, 40.0, 1.0, ranks=(8, 16), seed=0)
    free = place(workload, profile, check=cost_model(max_wait_s=None))
    capped = place(workload, profile, check=cost_model(max_wait_s=2.0))
    assert capped.gpu_count >= free.gpu_count
    assert all(g.wait_s <= 2.0 for g in capped.gpus)
    assert max(g.wait_s for g in free.gpus) > 2.0


@pytest.mark.slow
@given(st.integers(2, 40), st.floats(0.5, 60.0), st.floats(0.6, 1.4), st.integers(0, 10_000))
@settings(max_examples=15, deadline=None)
def test_lower_bound_never_exceeds_the_greedy(n, total, exponent, seed):
    profile = load_profile(PROFILE)
    workload = zipf_layout(n, total, exponent, ranks=(8, 16, 32), seed=seed)
    placement = place(workload, profile)
    assert 1 <= placement.lower_bound <= placement.gpu_count


@pytest.mark.slow
@given(st.integers(1, 400), st.floats(0.2, 60.0), st.floats(0.0, 1.5), st.sampled_from([(8,), (16,), (32,), (8, 16, 32)]),
       st.integers(0, 10_000), st.sampled_from([None, 60.0, 5.0]))
@settings(max_examples=40, deadline=None)
def test_a_share_the_check_accepts_never_needs_more_than_one_gpu_by_the_bound(n, total, exponent, ranks, seed, max_wait):
    """The bound's per-GPU conditions are necessary: any share the check accepts satisfies them,
    so its fractional bound is at most 1."""
    profile = load_profile(PROFILE)
    check = cost_model(max_wait_s=max_wait)
    share = list(zipf_layout(n, total, exponent, ranks=ranks, seed=seed).adapters)
    if check.evaluate(share, profile).ok:
        assert fractional_bound(check, share, profile) <= 1.0 + 1e-9


def test_a_gpu_with_every_adapter_resident_off_the_candidate_grid_is_a_class_of_the_bound(profile):
    """max_loras may be the adapter count (36 here, between the candidates 32 and 48): the bound's
    classes must include such a GPU, or the relaxation rules out a share the check accepts."""
    check = cost_model(max_wait_s=None)
    share = same_adapters(36, 0.8, rank=32)
    verdict = check.evaluate(share, profile)
    assert verdict.ok and verdict.best.max_loras == 36
    assert fractional_bound(check, share, profile) <= 1.0


@pytest.mark.slow
@given(st.integers(20, 600), st.floats(5.0, 120.0), st.floats(0.3, 1.3), st.integers(0, 10_000),
       st.sampled_from([None, 60.0, 10.0]))
@settings(max_examples=6, deadline=None)
def test_every_gpu_of_a_greedy_placement_fits_the_bounds_conditions(n, total, exponent, seed, max_wait):
    """The greedy fills GPUs to the check's limit: the shares where a condition of the bound that
    is not necessary would show first."""
    profile = load_profile(PROFILE)
    check = cost_model(max_wait_s=max_wait)
    workload = zipf_layout(n, total, exponent, ranks=(8, 16, 32), seed=seed)
    by_id = {a.id: a for a in workload.adapters}
    try:
        placement = place(workload, profile, check=check, search_moves=0)
    except InputError:  # the busiest adapter fits no GPU: nothing to place
        assume(False)
    for gpu in placement.gpus:
        assert fractional_bound(check, [by_id[a.id] for a in gpu.adapters], profile) <= 1.0 + 1e-9


@pytest.mark.slow
@given(st.integers(2, 300), st.floats(0.5, 80.0), st.floats(0.0, 1.4), st.integers(0, 10_000))
@settings(max_examples=15, deadline=None)
def test_the_bounds_class_weights_are_dual_feasible(n, total, exponent, seed):
    """Whatever weights the column generation finds, the bound holds only if every class's
    weights are >= 0 with sum v_k <= 1 + Λ_lo w_k."""
    profile = load_profile(PROFILE)
    check = CostModelCheck()
    rates = np.array([a.rate_req_s for a in zipf_layout(n, total, exponent, ranks=(8, 16, 32), seed=seed).adapters])
    need = np.full(len(rates), 32.0)
    need_, rate_, count_ = place_bound._groups(need, rates, None)
    costs = place_bound._class_costs(check, need_, rate_, len(rates), profile)
    weights, low_weights = place_bound._class_weights(costs, rate_, count_)
    assert np.all(weights >= 0) and np.all(low_weights >= 0)
    assert np.all(weights.sum(axis=1) <= 1 + costs.low * low_weights + 1e-12)


def test_the_column_generation_reaches_the_full_relaxation(profile):
    """On a few groups the master over the classes it picked comes close to the LP over every class."""
    check = CostModelCheck()
    adapters = reference_layout(500, (0.4, 0.1, 0.05), (8, 16, 32), seed=0).adapters
    rates = np.array([a.rate_req_s for a in adapters])
    need = np.array([float(a.rank) for a in adapters])
    need_, rate_, count_ = place_bound._groups(need, rates, None)
    costs = place_bound._class_costs(check, need_, rate_, len(rates), profile)
    weights, low_weights = place_bound._class_weights(costs, rate_, count_)
    generated = float(count_ @ costs.cheapest(weights, low_weights, rate_))
    every = np.arange(len(costs.low))
    full_weights, full_low = place_bound._master_duals(costs.rows(every), rate_, count_)
    full = float(count_ @ costs.cheapest(full_weights, full_low, rate_))
    # any dual-feasible weights bound the LP from below; two rounds come within 1% of its optimum
    assert 0.99 * full <= generated <= full * (1 + 1e-6)
    # and stronger than one mix of the three costs shared by every class
    mix = np.broadcast_to(place_bound.best_seed_mix(costs.cheapest_mixed(place_bound.SEED_WEIGHTS)[0], count_), weights.shape)
    shared = float(count_ @ costs.cheapest(mix, np.zeros_like(low_weights), rate_))
    assert generated > 1.05 * shared


def test_the_bound_proves_the_greedy_optimal_on_a_rate_triple_layout(profile):
    workload = reference_layout(500, (0.4, 0.1, 0.05), (8, 16, 32), seed=0)
    placement = place(workload, profile)
    assert placement.lower_bound == placement.gpu_count == 5


@given(st.integers(3, 8), st.floats(5.0, 60.0), st.integers(0, 1000))
@settings(max_examples=8, deadline=None)
def test_lower_bound_never_exceeds_the_exact_optimum(n, total, seed):
    profile = load_profile(PROFILE)
    workload = zipf_layout(n, total, 0.8, ranks=(8, 16, 32), seed=seed)
    exact = place(workload, profile, algorithm="exact")
    assert exact.lower_bound <= exact.gpu_count


@pytest.mark.parametrize("name", ["llama-3.1-8b-instruct", "qwen-2.5-7b-instruct",
                                  "llama-3.1-8b-instruct-reference", "qwen-2.5-7b-instruct-reference"])
def test_every_built_in_profile_places_with_a_bound_below_the_count(name):
    profile = load_profile(name)
    workload = zipf_layout(200, 40.0, 1.0, ranks=(8, 16, 32), seed=3)
    placement = place(workload, profile)
    assert 1 <= placement.lower_bound <= placement.gpu_count
    assert placement.refused_gpus == []
    assert all(g.wait_s <= 60.0 for g in placement.gpus)


@given(st.integers(1, 12), st.integers(1, 9), st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_the_compiled_pricing_is_the_array_formula(n_classes, n_groups, seed):
    """The bound's compiled pricing loops give what the (memory-hungry) array expressions give."""
    rng = np.random.default_rng(seed)
    barred = rng.random((n_classes, n_groups)) < 0.3
    time, places, band = (np.where(barred, np.inf, rng.random((n_classes, n_groups)) * 3) for _ in range(3))
    # weights with zeros in them, as the duals have
    weights = rng.random((n_classes, 3)) * (rng.random((n_classes, 3)) < 0.7)
    low_weights = rng.random(n_classes) * (rng.random(n_classes) < 0.5)
    # and a last class a hair cheaper than the first: the least must be found, not the first close one
    time, places, band = (np.vstack([c, c[:1] * (1 - 1e-9)]) for c in (time, places, band))
    weights, low_weights = np.vstack([weights, weights[:1]]), np.append(low_weights, low_weights[0])
    n_classes += 1
    costs = place_bound.ClassCosts(time, places, band, rng.random(n_classes) * 5)
    rates = rng.random(n_groups)
    rows = np.flatnonzero(rng.random(n_classes) < 0.6)
    finite = np.isfinite(time)
    with np.errstate(invalid="ignore"):
        price = weights[:, :1] * time + weights[:, 1:2] * places + weights[:, 2:] * band - low_weights[:, None] * rates
    price = np.where(finite, price, np.inf)
    expected = price[rows].min(axis=0) if len(rows) else np.full(n_groups, np.inf)
    assert np.allclose(costs.cheapest(weights, low_weights, rates, rows), expected, rtol=1e-12, atol=1e-12)

    mixes = place_bound.SEED_WEIGHTS
    mixed = np.where(finite, np.tensordot(mixes, np.stack([np.where(finite, c, 0.0) for c in (time, places, band)]), axes=1), np.inf)
    least, which = costs.cheapest_mixed(mixes)
    assert np.allclose(least, mixed.min(axis=1), rtol=1e-12, atol=1e-12)
    reachable = np.isfinite(least)
    assert np.allclose(np.take_along_axis(mixed, which[:, None, :], axis=1)[:, 0][reachable], least[reachable], rtol=1e-12, atol=1e-12)

    duals = rng.random(n_groups) * 2
    counts = rng.integers(1, 50, n_groups).astype(float)
    expected = np.where(finite[None], np.minimum(mixed - duals, 0.0), 0.0)[:, rows] @ counts
    assert np.allclose(costs.shortfalls(mixes, duals, counts, rows), expected, rtol=1e-12, atol=1e-9)

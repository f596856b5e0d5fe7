import math

import numpy as np
import pytest
from pydantic import ValidationError

from loratwin.errors import InputError
from loratwin.workload import (
    AdapterSpec,
    GammaArrival,
    LengthSpec,
    PoissonArrival,
    ScheduleSegment,
    UnpredictableArrival,
    WorkloadSpec,
    generate_requests,
    load_workload_yaml,
    reference_layout,
)
from loratwin.workload.lengths import sample_lengths


def uniform_workload(arrival, n_adapters, rate):
    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=rate) for i in range(n_adapters)]
    return WorkloadSpec(adapters=adapters, arrival=arrival)


def gap_cv(times):
    gaps = np.diff(times)
    return gaps.std() / gaps.mean()


# --- Poisson: the reference behaviour is unchanged ---------------------------------------------


def legacy_generate(workload, duration_s, seed):
    """The generator as it was before arrival processes existed; the twin's benchmark depends on it."""
    rng = np.random.default_rng(seed)
    rates = np.array([adapter.rate_req_s for adapter in workload.adapters])
    counts = rng.poisson(rates * duration_s)
    arrival_s = rng.uniform(0.0, duration_s, int(counts.sum()))
    np.minimum(arrival_s, np.nextafter(duration_s, 0.0), out=arrival_s)
    adapter = np.repeat(np.arange(len(rates), dtype=np.int32), counts)
    order = np.argsort(arrival_s, kind="stable")
    prompts, outputs = sample_lengths(workload.lengths, len(order), rng)
    return arrival_s[order], adapter[order], prompts, outputs


@pytest.mark.parametrize(
    ("workload", "duration_s", "seed"),
    [
        (reference_layout(128, [1.6, 0.8, 0.4], [8, 16], 0, lengths=LengthSpec()), 3600.0, 0),
        (reference_layout(40, [0.5, 0.0, 3.0], [8, 64], 5, lengths=LengthSpec()), 123.5, 17),
    ],
)
def test_poisson_tables_are_bit_identical_to_the_original_generator(workload, duration_s, seed):
    table = generate_requests(workload, duration_s, seed)
    expected = legacy_generate(workload, duration_s, seed)
    for column, values in zip(("arrival_s", "adapter", "prompt_tokens", "output_tokens"), expected, strict=True):
        assert np.array_equal(getattr(table, column), values), column


def test_explicit_poisson_default_is_the_same_process():
    plain = reference_layout(16, [1.0, 2.0], [8], 0)
    explicit = reference_layout(16, [1.0, 2.0], [8], 0, arrival=PoissonArrival())
    assert plain == explicit
    assert np.array_equal(generate_requests(plain, 100.0, 3).arrival_s, generate_requests(explicit, 100.0, 3).arrival_s)


# --- Gamma ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_rate_and_gap_cv(cv):
    rate, duration_s = 4.0, 20_000.0
    table = generate_requests(uniform_workload(GammaArrival(cv=cv), 1, rate), duration_s, seed=11)
    expected = rate * duration_s
    # A renewal count's variance is about mean x CV^2.
    assert abs(len(table) - expected) <= 4.5 * math.sqrt(expected) * cv
    assert gap_cv(table.arrival_s) == pytest.approx(cv, rel=0.06)
    assert np.diff(table.arrival_s).mean() == pytest.approx(1 / rate, rel=0.04)


def test_gamma_is_stationary_from_time_zero():
    # Started with an arrival at 0 or a full gap, a very bursty process would front-load arrivals
    # (about 5x the rate in the first second for CV 3); started in equilibrium it does not.
    table = generate_requests(uniform_workload(GammaArrival(cv=3.0), 20_000, 1.0), 1.0, seed=4)
    assert len(table) == pytest.approx(20_000, rel=0.06)


def test_gamma_and_poisson_mix_in_one_workload():
    adapters = [
        AdapterSpec(id="steady", rank=8, rate_req_s=5.0),
        AdapterSpec(id="bursty", rank=16, rate_req_s=5.0, arrival=GammaArrival(cv=3.0)),
        AdapterSpec(id="smooth", rank=8, rate_req_s=5.0, arrival=GammaArrival(cv=0.3)),
    ]
    table = generate_requests(WorkloadSpec(adapters=adapters), 10_000.0, seed=2)
    assert np.all(np.diff(table.arrival_s) >= 0)
    for position, cv in enumerate((1.0, 3.0, 0.3)):
        times = table.arrival_s[table.adapter == position]
        assert len(times) == pytest.approx(50_000, rel=4.5 * cv / math.sqrt(50_000))
        assert gap_cv(times) == pytest.approx(cv, rel=0.08)


# --- schedules ---------------------------------------------------------------------------------


SCHEDULE = [{"until_s": 600, "scale": 1.0}, {"until_s": 1200, "scale": 2.0}, {"until_s": 1500, "scale": 0.0}, {"scale": 0.5}]
EDGES = [0, 600, 1200, 1500, 3000]
SCALES = [1.0, 2.0, 0.0, 0.5]


@pytest.mark.parametrize("arrival", [PoissonArrival(schedule=SCHEDULE), GammaArrival(cv=2.0, schedule=SCHEDULE)])
def test_schedule_segment_rates(arrival):
    rate, n_adapters = 3.0, 10
    table = generate_requests(uniform_workload(arrival, n_adapters, rate), 3000.0, seed=6)
    counts, _ = np.histogram(table.arrival_s, EDGES)
    cv = getattr(arrival, "cv", 1.0)
    for count, scale, start, end in zip(counts, SCALES, EDGES[:-1], EDGES[1:], strict=True):
        expected = n_adapters * rate * scale * (end - start)
        assert abs(count - expected) <= 4.5 * cv * math.sqrt(expected) + 1e-9, (start, count, expected)


def test_gamma_gaps_keep_their_cv_inside_a_scaled_segment():
    arrival = GammaArrival(cv=2.0, schedule=[{"until_s": 1000, "scale": 1.0}, {"scale": 4.0}])
    table = generate_requests(uniform_workload(arrival, 1, 5.0), 5000.0, seed=3)
    late = table.arrival_s[table.arrival_s >= 1000]
    assert np.diff(late).mean() == pytest.approx(1 / 20.0, rel=0.05)
    assert gap_cv(late) == pytest.approx(2.0, rel=0.08)


def test_schedule_last_segment_extends_to_the_end_and_can_start_idle():
    arrival = PoissonArrival(schedule=[{"until_s": 100, "scale": 0.0}, {"until_s": 200, "scale": 1.0}])
    table = generate_requests(uniform_workload(arrival, 1, 50.0), 1000.0, seed=0)
    assert table.arrival_s.min() >= 100
    assert len(table) == pytest.approx(50 * 900, rel=0.03)  # the last scale holds until 1000 s


def test_schedule_past_the_run_is_cut():
    arrival = GammaArrival(cv=1.5, schedule=[{"until_s": 5000, "scale": 2.0}, {"scale": 0.0}])
    table = generate_requests(uniform_workload(arrival, 4, 1.0), 500.0, seed=1)
    assert table.arrival_s.max() < 500
    assert len(table) == pytest.approx(4 * 2 * 500, rel=0.15)


# --- unpredictable ----------------------------------------------------------------------------


def counts_per_period(table, n_adapters, period_s, n_periods):
    cell = table.adapter.astype(np.int64) * n_periods + (table.arrival_s // period_s).astype(np.int64)
    return np.bincount(cell, minlength=n_adapters * n_periods).reshape(n_adapters, n_periods)


def test_unpredictable_rate_changes_by_1_5_at_period_boundaries():
    n_adapters, rate, period_s, n_periods = 20, 100.0, 30.0, 8
    table = generate_requests(
        uniform_workload(UnpredictableArrival(period_s=period_s), n_adapters, rate), period_s * n_periods, seed=5
    )
    counts = counts_per_period(table, n_adapters, period_s, n_periods)
    # The first period runs at the base rate.
    assert counts[:, 0].sum() == pytest.approx(n_adapters * rate * period_s, rel=0.03)
    # Across a boundary the rate moves by a factor 1.5 either way...
    busy = (counts[:, 1:] >= 1000) & (counts[:, :-1] >= 1000)
    across = np.abs(np.log(counts[:, 1:] / counts[:, :-1]))[busy]
    assert busy.sum() > 50
    assert np.all(np.abs(across - math.log(1.5)) < 0.25)
    # ...and both ways happen.
    signed = np.log(counts[:, 1:] / counts[:, :-1])[busy]
    assert 0.25 < (signed > 0).mean() < 0.75
    # Within a period it holds still.
    halves = counts_per_period(table, n_adapters, period_s / 2, 2 * n_periods).reshape(n_adapters, n_periods, 2)
    steady = halves.min(axis=2) >= 500
    within = np.abs(np.log(halves[..., 1] / halves[..., 0]))[steady]
    assert np.median(within) < 0.05 < np.median(across) - 0.3


def test_unpredictable_switches_between_exponential_and_lognormal_gaps():
    # The interquartile ratio of gaps is ln 4 / ln(4/3) = 4.8 for exponential gaps and
    # exp(1.35 sigma) = 14.9 for log-normal gaps with sigma = 2.
    n_adapters, period_s, n_periods = 20, 30.0, 8
    table = generate_requests(
        uniform_workload(UnpredictableArrival(period_s=period_s, sigma=2.0), n_adapters, 100.0),
        period_s * n_periods,
        seed=7,
    )
    ratios = []
    for adapter in range(n_adapters):
        times = table.arrival_s[table.adapter == adapter]
        period = (times // period_s).astype(np.int64)
        for number in range(n_periods):
            gaps = np.diff(times[period == number])
            if len(gaps) >= 400:
                low, high = np.quantile(gaps, [0.25, 0.75])
                ratios.append(high / low)
    ratios = np.array(ratios)
    exponential = (ratios > 3.5) & (ratios < 7.0)
    lognormal = ratios > 10.0
    assert np.all(exponential | lognormal)
    assert 0.3 < exponential.mean() < 0.7


def test_unpredictable_periods_are_cut_at_the_run_end():
    table = generate_requests(uniform_workload(UnpredictableArrival(period_s=300), 3, 2.0), 450.0, seed=1)
    assert 0 < len(table) and table.arrival_s.max() < 450


# --- determinism and zero rates -----------------------------------------------------------


def mixed_workload():
    return WorkloadSpec(
        adapters=[
            AdapterSpec(id="p", rank=8, rate_req_s=2.0),
            AdapterSpec(id="s", rank=8, rate_req_s=1.0, arrival=PoissonArrival(schedule=SCHEDULE)),
            AdapterSpec(id="g", rank=16, rate_req_s=1.5, arrival=GammaArrival(cv=2.0)),
            AdapterSpec(id="gs", rank=16, rate_req_s=1.5, arrival=GammaArrival(cv=0.7, schedule=SCHEDULE)),
            AdapterSpec(id="u", rank=32, rate_req_s=1.0, arrival=UnpredictableArrival(period_s=50)),
            AdapterSpec(id="idle", rank=8, rate_req_s=0.0, arrival=GammaArrival(cv=2.0)),
            AdapterSpec(id="idle-u", rank=8, rate_req_s=0.0, arrival=UnpredictableArrival()),
        ]
    )


def test_same_seed_same_table_for_every_process():
    first = generate_requests(mixed_workload(), 2000.0, seed=8)
    second = generate_requests(mixed_workload(), 2000.0, seed=8)
    other = generate_requests(mixed_workload(), 2000.0, seed=9)
    for column in ("arrival_s", "adapter", "prompt_tokens", "output_tokens"):
        assert np.array_equal(getattr(first, column), getattr(second, column))
    assert len(first) != len(other) or not np.array_equal(first.arrival_s, other.arrival_s)
    assert set(np.unique(first.adapter)) == {0, 1, 2, 3, 4}  # the idle adapters never appear
    assert np.all(np.diff(first.arrival_s) >= 0) and first.arrival_s.max() < 2000


def test_mixed_processes_are_fast():
    import time

    workload = reference_layout(300, [0.25, 1.0, 2.0], [8, 16, 32], 0, arrival=GammaArrival(cv=2.0))
    adapters = tuple(
        adapter.model_copy(update={"arrival": UnpredictableArrival()}) if i % 3 == 0 else adapter
        for i, adapter in enumerate(workload.adapters)
    )
    workload = workload.model_copy(update={"adapters": adapters})
    generate_requests(workload, 10.0, seed=0)
    start = time.perf_counter()
    table = generate_requests(workload, 1_400.0, seed=1)
    assert len(table) > 400_000
    assert time.perf_counter() - start < 0.5


# --- specification: Python and YAML -------------------------------------------------------


def test_adapter_arrival_overrides_the_workload_default():
    workload = WorkloadSpec(
        adapters=[AdapterSpec(id="a", rank=8), AdapterSpec(id="b", rank=8, arrival={"kind": "gamma", "cv": 2})],
        arrival="unpredictable",
    )
    assert workload.arrivals() == (UnpredictableArrival(), GammaArrival(cv=2.0))


def write(tmp_path, text):
    path = tmp_path / "workload.yaml"
    path.write_text(text)
    return path


def test_yaml_arrivals(tmp_path):
    path = write(
        tmp_path,
        """
arrival: {kind: gamma, cv: 2.5}
adapters:
  - {id: chat, rank: 8, rate_req_s: 2}
  - id: batch
    rank: 16
    rate_req_s: 1
    arrival:
      schedule: [{until_s: 600, scale: 1.0}, {until_s: 1200, scale: 2.0}, {scale: 0.5}]
  - {id: wild, rank: 32, rate_req_s: 0.5, arrival: {kind: unpredictable, period_s: 120, sigma: 1.5}}
  - {id: shorthand, rank: 8, rate_req_s: 0.5, arrival: unpredictable}
""",
    )
    workload = load_workload_yaml(path)
    assert workload.arrivals() == (
        GammaArrival(cv=2.5),
        PoissonArrival(
            schedule=(
                ScheduleSegment(until_s=600, scale=1.0),
                ScheduleSegment(until_s=1200, scale=2.0),
                ScheduleSegment(scale=0.5),
            )
        ),
        UnpredictableArrival(period_s=120, sigma=1.5),
        UnpredictableArrival(),
    )
    assert len(generate_requests(workload, 100.0, seed=0)) > 0


def test_yaml_default_arrival_applies_to_a_layout(tmp_path):
    path = write(tmp_path, "layout: {served: 6, rates: [1, 2], ranks: [8]}\narrival: {kind: gamma, cv: 3}\n")
    assert load_workload_yaml(path) == reference_layout(6, [1, 2], [8], 0, arrival=GammaArrival(cv=3))


ADAPTER = "adapters:\n  - {id: a, rank: 8, rate_req_s: 1}\n  - {id: b, rank: 8, rate_req_s: 1, arrival: %s}\n"


@pytest.mark.parametrize(
    ("arrival", "expected"),
    [
        ("{kind: weibull}", "adapters[1].arrival.kind: must be one of 'poisson', 'gamma', 'unpredictable', got 'weibull'"),
        ("weibull", "adapters[1].arrival.kind: must be one of 'poisson', 'gamma', 'unpredictable', got 'weibull'"),
        ("{kind: gamma}", "adapters[1].arrival.cv: is required"),
        ("{kind: gamma, cv: -1}", "adapters[1].arrival.cv: must be >= 0.01, got -1"),
        ("{kind: gamma, cv: 0}", "adapters[1].arrival.cv: must be >= 0.01, got 0"),
        ("{kind: gamma, cv: .nan}", "adapters[1].arrival.cv: must be a finite number"),
        ("{kind: poisson, cv: 2}", "adapters[1].arrival.cv: unknown field; expected one of: kind, schedule"),
        ("{kind: unpredictable, period_s: 0}", "adapters[1].arrival.period_s: must be > 0, got 0"),
        ("{kind: unpredictable, sigma: -0.5}", "adapters[1].arrival.sigma: must be > 0, got -0.5"),
        (
            "{kind: unpredictable, cv: 2}",
            "adapters[1].arrival.cv: unknown field; expected one of: kind, period_s, sigma, schedule",
        ),
        ("{kind: unpredictable, schedule: []}", "adapters[1].arrival.schedule: must not be empty"),
        ("7", "adapters[1].arrival: must be a mapping with a 'kind', got 7"),
        ("{schedule: []}", "adapters[1].arrival.schedule: must not be empty"),
        (
            "{schedule: [{until_s: 600, scale: 1}, {until_s: 300, scale: 2}]}",
            "adapters[1].arrival.schedule: until_s must increase from one segment to the next, got 300 at [1] after 600 at [0]",
        ),
        (
            "{kind: gamma, cv: 2, schedule: [{until_s: 600, scale: 1}, {until_s: 600, scale: 2}]}",
            "adapters[1].arrival.schedule: until_s must increase",
        ),
        (
            "{schedule: [{scale: 1}, {until_s: 300, scale: 2}]}",
            "adapters[1].arrival.schedule: [0].until_s is required: only the last segment may leave it out",
        ),
        ("{schedule: [{until_s: 600, scale: -1}]}", "adapters[1].arrival.schedule[0].scale: must be >= 0, got -1"),
        ("{schedule: [{until_s: -5, scale: 1}]}", "adapters[1].arrival.schedule[0].until_s: must be > 0, got -5"),
        ("{schedule: [{until_s: 60, scale: 1, rate: 2}]}", "schedule[0].rate: unknown field; expected one of: until_s, scale"),
    ],
)
def test_yaml_arrival_mistakes_name_the_field(tmp_path, arrival, expected):
    path = write(tmp_path, ADAPTER % arrival)
    with pytest.raises(InputError) as caught:
        load_workload_yaml(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_yaml_negative_rate_and_bad_default(tmp_path):
    path = write(tmp_path, "arrival: {kind: gamma, cv: -2}\nadapters: [{id: a, rank: 8, rate_req_s: -1}]\n")
    with pytest.raises(InputError) as caught:
        load_workload_yaml(path)
    assert "adapters[0].rate_req_s: must be >= 0, got -1" in str(caught.value)
    assert "arrival.cv: must be >= 0.01, got -2" in str(caught.value)


def test_python_models_name_the_bad_field():
    with pytest.raises(ValidationError, match="cv"):
        GammaArrival(cv=-1)
    with pytest.raises(ValidationError, match="until_s must increase"):
        PoissonArrival(schedule=[{"until_s": 10, "scale": 1}, {"until_s": 5, "scale": 1}])
    with pytest.raises(ValidationError, match="weibull"):
        AdapterSpec(id="a", rank=8, arrival={"kind": "weibull"})


@pytest.mark.parametrize(
    ("arrival", "hint"),
    [
        (PoissonArrival(schedule=[{"until_s": 10, "scale": 1e12}]), r"\(lower the rates or duration_s\)"),
        (GammaArrival(cv=2.0, schedule=[{"until_s": 10, "scale": 1.0}, {"scale": 1e9}]), "lower the rates or duration_s"),
        (UnpredictableArrival(schedule=[{"until_s": 10, "scale": 1.0}, {"scale": 1e9}]), "rise up to 7.5 times"),
    ],
)
def test_runaway_volumes_are_refused_before_drawing(arrival, hint):
    """The budget is the rule: the requests a workload would draw are priced before they are drawn."""
    with pytest.raises(InputError, match=f"of memory .*needed for ~.* requests drawn over 3600 s.*{hint}"):
        generate_requests(uniform_workload(arrival, 10, 1.0), 3600.0, seed=0)


def test_the_volume_a_run_may_draw_follows_the_memory_limit(monkeypatch):
    from loratwin import budget

    workload = uniform_workload(PoissonArrival(), 10, 100.0)  # ~60,000 requests in a minute
    monkeypatch.setenv(budget.ENV_VAR, "300.5M")  # room for ~5,000 requests drawn above the process
    with pytest.raises(InputError, match=r"needed for ~6.1e4 requests drawn over 60 s|needed for ~61,\d+ requests drawn"):
        generate_requests(workload, 60.0, seed=0)
    monkeypatch.setenv(budget.ENV_VAR, "1G")
    assert len(generate_requests(workload, 60.0, seed=0)) > 50_000

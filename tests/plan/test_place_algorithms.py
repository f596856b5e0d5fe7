"""Placement: invariants of every algorithm, GPU-count errors, the checks against the twin."""

from __future__ import annotations

import json

import pytest

from loratwin import AdapterSpec, InputError
from loratwin.plan.judge import AcceptanceRule, CostModelCheck, GpuCheck, TwinCheck, make_check
from loratwin.plan.placement import (
    ALGORITHMS,
    EXACT_MAX_ADAPTERS,
    ShareJudge,
    lower_bound,
    place,
    verify_placement,
)
from loratwin.plan.placement.fill import alternate_high_low, greedy_bins
from loratwin.plan.placement.place import default_check
from loratwin.plan.placement.spread import SPREAD_MAX_SCALE, SPREAD_TOLERANCE, _spread_greedy
from loratwin.workload import WorkloadSpec, reference_layout, zipf_layout

from .conftest import load_at_kv_use, resident_share

PROFILE = "llama-3.1-8b-instruct"


def assert_valid(placement, workload):
    ids = [a.id for g in placement.gpus for a in g.adapters]
    assert sorted(ids) == sorted(a.id for a in workload.adapters), "each adapter on exactly one GPU"
    for g in placement.gpus:
        assert g.adapters, "no empty GPU"
        assert g.max_lora_rank >= max(a.rank for a in g.adapters)
        assert 1 <= g.max_loras <= g.max_cpu_loras == len(g.adapters)
    assert placement.gpu_count >= placement.lower_bound >= 1


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "exact"])
def test_every_algorithm_places_each_adapter_once_without_predicted_starvation(algorithm, zipf60, profile):
    placement = place(zipf60, profile, algorithm=algorithm)
    assert_valid(placement, zipf60)
    assert placement.algorithm == algorithm
    assert placement.check == "cost-model"
    assert placement.refused_gpus == []
    assert placement.offered_tok_s == pytest.approx(
        CostModelCheck().offered_tok_s(zipf60.adapters, profile), rel=1e-9
    )


def test_greedy_orders_each_rank_group_alternately_high_and_low():
    rates = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert alternate_high_low(list(range(5)), rates) == [0, 1, 2, 3, 4]
    assert [rates[i] for i in alternate_high_low([0, 2, 4, 3, 1], rates)] == [5.0, 1.0, 4.0, 2.0, 3.0]


def test_greedy_fills_the_largest_ranks_first(zipf60, profile):
    placement = place(zipf60, profile)
    first_ranks = [max(a.rank for a in g.adapters) for g in placement.gpus]
    assert first_ranks == sorted(first_ranks, reverse=True)
    assert placement.gpus[0].max_lora_rank == 32


def test_too_few_gpus_is_an_error_that_says_how_many_are_needed(zipf60, profile):
    needed = place(zipf60, profile).gpu_count
    with pytest.raises(InputError, match=rf"--gpus 1 is not enough.*needs {needed} GPUs \(lower bound: \d+\)"):
        place(zipf60, profile, gpus=1)
    with pytest.raises(InputError, match="not enough"):
        place(zipf60, profile, gpus=1, algorithm="round-robin")


def test_more_gpus_than_needed_spreads_the_load(zipf60, profile):
    fewest = place(zipf60, profile)
    spread = place(zipf60, profile, gpus=fewest.gpu_count + 2)
    assert_valid(spread, zipf60)
    assert spread.gpu_count == fewest.gpu_count + 2
    assert max(g.pressure for g in spread.gpus) <= max(g.pressure for g in fewest.gpus)
    rr = place(zipf60, profile, gpus=fewest.gpu_count + 2, algorithm="round-robin")
    assert rr.gpu_count == fewest.gpu_count + 2


def test_asking_for_the_fewest_gpus_spreads_the_load_over_them(zipf60, profile):
    fewest = place(zipf60, profile)
    pressures = [g.pressure for g in fewest.gpus]
    # the greedy fills the first GPU to its limit and leaves the last the rest; it says so
    assert max(pressures) - min(pressures) > 0.3
    assert any(f"--gpus {fewest.gpu_count} spreads" in note for note in fewest.notes)
    even = place(zipf60, profile, gpus=fewest.gpu_count)
    assert_valid(even, zipf60)
    assert even.gpu_count == fewest.gpu_count
    assert max(g.pressure for g in even.gpus) < 0.5 * max(pressures)
    assert any(note.startswith("spread over") for note in even.notes)


@pytest.mark.parametrize("extra", [0, 2])
def test_the_spread_finds_the_largest_rate_scale_that_fits_to_within_its_tolerance(zipf60, profile, extra):
    judge = ShareJudge(CostModelCheck(), profile, zipf60.adapters)
    bins = greedy_bins(judge)
    gpus = len(bins) + extra
    spread, scale = _spread_greedy(judge, gpus, bins)
    assert scale > 1.0 and 1 <= len(spread) <= gpus
    assert sorted(i for b in spread for i in b) == list(range(len(zipf60.adapters)))
    # the scale it returns fills at most `gpus` GPUs; one a tolerance step higher does not
    assert spread == greedy_bins(judge.scaled(scale))
    above = scale * SPREAD_TOLERANCE * 1.001
    assert greedy_bins(judge.scaled(above), max_bins=gpus) is None
    assert len(greedy_bins(judge.scaled(above))) > gpus


@pytest.mark.parametrize("rate", [0.01, 6.0])
def test_the_spread_ends_at_its_largest_scale_whether_or_not_that_fits(profile, rate):
    # three adapters on three GPUs: quiet ones still fit one per GPU at the largest scale; busy
    # ones stop fitting on their own GPU before it
    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=rate) for i in range(3)]
    judge = ShareJudge(CostModelCheck(), profile, adapters)
    bins = greedy_bins(judge)
    spread, scale = _spread_greedy(judge, 3, bins)
    assert 1.0 < scale <= SPREAD_MAX_SCALE and len(spread) <= 3
    assert (scale == SPREAD_MAX_SCALE) == (rate == 0.01)


def test_the_spread_stops_when_its_largest_scale_is_the_first_not_to_fit(profile):
    """A GPU takes up to 14.8 req/s: five adapters at 1 req/s on five GPUs climb to 5, 10 (one per
    GPU), then by tenths to 14.64 and the cap, 16, which does not fit; the bracket closes between."""
    from loratwin.plan.judge import GpuVerdict, SlotOption
    from loratwin.plan.judge.rule import Judgement, Prediction
    from loratwin.plan.judge.verdict import judge_by_list

    class TotalRate:
        name = "total-rate"
        rule = AcceptanceRule()
        fast = True

        def evaluate(self, adapters, profile):
            total = sum(a.rate_req_s for a in adapters)
            judgement = Judgement(total <= 14.8, total / 14.8, f"total rate {total:g} of 14.8 req/s allowed")
            return GpuVerdict(len(adapters), 8, total, (SlotOption(Prediction(1, total), judgement),))

        def share_judge(self, adapters, profile):
            return judge_by_list(self, adapters, profile)

    adapters = [AdapterSpec(id=f"a{i}", rank=8, rate_req_s=1.0) for i in range(5)]
    assert isinstance(TotalRate(), GpuCheck)
    judge = ShareJudge(TotalRate(), profile, adapters)
    spread, scale = _spread_greedy(judge, 5, greedy_bins(judge))
    assert len(spread) == 5 and 14.6 < scale <= 14.8


def test_a_rank_the_profile_cannot_serve_is_refused(profile):
    with pytest.raises(InputError, match="rank 600 is above 512, the largest --max-lora-rank vLLM accepts"):
        place([AdapterSpec(id="wide", rank=600, rate_req_s=0.1)], profile)
    # without its memory model the profile prices only the measured ranks
    table_only = profile.model_copy(update={"kv": profile.kv.model_copy(update={"memory": None})})
    with pytest.raises(InputError, match="rank 128 is above every max_lora_rank"):
        place([AdapterSpec(id="wide", rank=128, rate_req_s=0.1)], table_only)


def test_unmeasured_ranks_are_served_at_the_least_rank_vllm_accepts(profile):
    adapters = [AdapterSpec(id=f"a{i}", rank=r, rate_req_s=0.05) for i, r in enumerate([4, 12, 64, 128])]
    result = place(adapters, profile)
    assert len(result.gpus) == 1 and result.gpus[0].max_lora_rank == 128
    assert [g.max_lora_rank for g in place(adapters[:2], profile).gpus] == [16]


def test_bad_arguments_are_input_errors(zipf60, profile):
    with pytest.raises(InputError, match="--algorithm"):
        place(zipf60, profile, algorithm="random")
    with pytest.raises(InputError, match="--gpus"):
        place(zipf60, profile, gpus=0)
    with pytest.raises(InputError, match="no adapters"):
        place([], profile)


def test_exact_needs_no_more_gpus_than_greedy_and_refuses_large_instances(profile):
    workload = reference_layout(10, [6.0, 2.0, 0.5], [8, 16], seed=1)
    exact = place(workload, profile, algorithm="exact")
    greedy = place(workload, profile)
    assert_valid(exact, workload)
    assert exact.lower_bound <= exact.gpu_count <= greedy.gpu_count
    big = reference_layout(EXACT_MAX_ADAPTERS + 1, [0.1], [8], seed=0)
    with pytest.raises(InputError, match="exact places at most"):
        place(big, profile, algorithm="exact")


def test_lower_bound_grows_with_load(profile):
    light = zipf_layout(50, 5.0, ranks=(8, 16), seed=0)
    heavy = zipf_layout(50, 60.0, ranks=(8, 16), seed=0)
    assert lower_bound(light, profile) == 1
    assert lower_bound(heavy, profile) >= 2  # 25k tok/s offered, at most about 16k per GPU


def test_serve_commands_and_dict(zipf60, profile):
    placement = place(zipf60, profile)
    commands = placement.vllm_serve_commands()
    assert len(commands) == placement.gpu_count
    for g, command in zip(placement.gpus, commands):
        assert command.startswith(f"vllm serve {profile.model} --enable-lora --max-loras {g.max_loras} ")
        assert f"--max-cpu-loras {g.max_cpu_loras} --max-lora-rank {g.max_lora_rank}" in command
        for a in g.adapters:
            assert f" {a.id}=./adapters/{a.id}" in command
    doc = json.loads(json.dumps(placement.to_dict()))
    assert doc["gpu_count"] == placement.gpu_count
    assert sum(len(g["adapters"]) for g in doc["gpus"]) == 60


def test_default_check_is_a_gpu_check(profile):
    check = default_check(profile, WorkloadSpec(adapters=(AdapterSpec(id="a", rank=8, rate_req_s=0.1),)))
    assert isinstance(check, GpuCheck)
    assert check.name in ("learned", "cost-model")


@pytest.mark.slow
def test_two_thousand_adapters_are_placed(profile):
    # how fast: benchmarks/input_speed.py
    workload = zipf_layout(2000, 150.0, 1.0, ranks=(8, 16, 32), seed=0)
    assert_valid(place(workload, profile, check=CostModelCheck()), workload)


# --- against the twin ---------------------------------------------------------------------------


def test_greedy_with_the_twin_check_is_verified_by_the_twin(profile):
    workload = reference_layout(8, [3.0, 1.0, 0.2], [8, 16], seed=0)
    check = TwinCheck(rule=AcceptanceRule(window_s=300.0), slot_grid=(1, 2, 4, 8))
    placement = place(workload, profile, check=check)
    assert_valid(placement, workload)
    assert placement.check == "twin"
    assert placement.refused_gpus == []
    runs = check.simulations
    check.evaluate(list(reversed(placement.gpus[0].adapters)), profile)
    assert check.simulations == runs, "equal adapter multisets come from the cache"
    report = verify_placement(placement, profile, duration_s=300.0, workers=1)
    assert report.starved_gpus == []
    assert report.total_tok_s == pytest.approx(sum(g.total_tok_s for g in report.gpus))


def test_cost_model_check_agrees_with_the_twin_on_clear_cases(profile):
    # a slot per adapter: only the load decides
    twin = TwinCheck(rule=AcceptanceRule(window_s=600.0), slot_grid=(16,))
    model = CostModelCheck(slot_grid=(16,))
    calm = list(reference_layout(16, [0.8, 0.4], [8, 16], seed=0).adapters)
    flooded = list(reference_layout(16, [4.0, 2.0], [8, 16], seed=0).adapters)
    for share, starves in ((calm, False), (flooded, True)):
        predicted = model.evaluate(share, profile)
        simulated = twin.evaluate(share, profile)
        assert len(predicted.options) == len(simulated.options) == 1
        for p, s in zip(predicted.options, simulated.options):
            assert p.max_loras == s.max_loras
            assert p.accepted is not starves and s.accepted is not starves
            if not starves:
                assert p.predicted_tok_s == pytest.approx(s.predicted_tok_s, rel=0.05)


def test_the_twin_check_refuses_long_waits_for_a_place_as_the_cost_model_does(profile):
    # 60 quiet adapters, 6 places: the GPU keeps up, but requests of idle adapters wait over a minute
    share = [AdapterSpec(id=f"q{i}", rank=8, rate_req_s=0.1) for i in range(60)]
    guarded = TwinCheck(rule=AcceptanceRule(window_s=600.0), slot_grid=(6,)).evaluate(share, profile).options[0]
    unguarded = TwinCheck(rule=AcceptanceRule(window_s=600.0, max_wait_s=None),
                          slot_grid=(6,)).evaluate(share, profile).options[0]
    assert guarded.wait_s == unguarded.wait_s > 60.0
    assert not guarded.accepted and unguarded.accepted
    assert not CostModelCheck(slot_grid=(6,)).evaluate(share, profile).options[0].accepted


def test_the_twin_check_refuses_a_batch_that_outgrows_the_kv_cache(profile):
    # 24 busy adapters at 36 req/s: the throughput rule passes (92% over 900 s), but every request
    # queues for KV and the queue keeps growing; at 32.4 req/s nothing queues
    def verdict(rate, max_wait_s):
        share = [AdapterSpec(id=f"b{i}", rank=8, rate_req_s=rate) for i in range(24)]
        rule = AcceptanceRule(window_s=900.0, max_wait_s=max_wait_s)
        return TwinCheck(rule=rule, slot_grid=(24,)).evaluate(share, profile).options[0]

    assert not verdict(1.5, 10.0).accepted and verdict(1.5, None).accepted
    assert verdict(1.35, 10.0).accepted


def test_the_twin_check_simulates_the_workloads_arrivals_and_wait_limit(profile):
    from loratwin.workload import GammaArrival

    bursty = GammaArrival(cv=3.0)
    check = make_check("twin", profile, arrival=bursty, rule=AcceptanceRule(max_wait_s=30.0, window_s=1800.0))
    assert check.arrival == bursty and check.rule.max_wait_s == 30.0 and check.rule.window_s == 1800.0
    assert make_check("twin", profile).arrival.kind == "poisson"


def test_verification_flags_an_overloaded_gpu(profile, zipf60):
    placement = place(zipf60, profile, gpus=3, algorithm="round-robin")
    overloaded = place(zipf60, profile, gpus=3)
    # squeeze everything onto one GPU by hand: the twin must see it starve
    from dataclasses import replace

    merged = replace(overloaded.gpus[0], adapters=tuple(a for g in placement.gpus for a in g.adapters), max_loras=60)
    squeezed = replace(overloaded, gpus=[merged])
    report = verify_placement(squeezed, profile, duration_s=300.0, workers=1)
    assert report.starved_gpus == [merged.index]
    assert report.refused_gpus == [merged.index]


def _linear_learned_models(directory, offered_coef: float = 1e-3) -> None:
    """Learned-model documents: throughput 0.97 x offered; starvation probability rising with the
    offered load (`offered_coef` per tok/s)."""
    from loratwin.learn.features import CONFIG_FEATURES

    directory.mkdir()
    zeros = [0.0] * len(CONFIG_FEATURES)
    starve_coef = [0.0] * len(CONFIG_FEATURES)
    starve_coef[CONFIG_FEATURES.index("offered_tok_s")] = offered_coef
    documents = {
        "total_tok_s.linear.json": {"format": "loratwin-model/1", "kind": "linear", "task": "regression",
                                    "target": "total_tok_s", "features": CONFIG_FEATURES,
                                    "output": {"multiply_by": "offered_tok_s"},
                                    "body": {"intercept": 0.97, "coef": zeros}},
        "starved.linear.json": {"format": "loratwin-model/1", "kind": "linear", "task": "classification",
                                "target": "starved", "features": CONFIG_FEATURES, "link": "logistic",
                                "body": {"intercept": -10.0, "coef": starve_coef}},
    }
    for name, doc in documents.items():
        (directory / name).write_text(json.dumps(doc))
    manifest = {"defaults": {"total_tok_s": "linear", "starved": "linear"},
                "models": {n[:-5]: {"file": n} for n in documents}}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_learned_check_reads_learn_models_documents(tmp_path, profile):
    pytest.importorskip("loratwin.learn.evaluators")
    from loratwin.plan.judge import LearnedCheck

    _linear_learned_models(tmp_path / profile.name)
    check = LearnedCheck.for_profile(profile, models_dir=tmp_path)
    assert check is not None and check.name == "learned"
    workload = zipf_layout(40, 40.0, 1.0, ranks=(8, 16), seed=0)  # 17k tok/s: 10k per GPU at most
    placement = place(workload, profile, check=check)
    assert_valid(placement, workload)
    assert all(g.offered_tok_s < 10_000 for g in placement.gpus)
    assert placement.check == "learned"


def test_learned_check_holds_the_wait_limit_with_the_cost_models_waits(tmp_path, profile):
    pytest.importorskip("loratwin.learn.evaluators")
    from loratwin.plan.judge import LearnedCheck

    # models that never predict starvation: only the wait limit can refuse
    _linear_learned_models(tmp_path / profile.name, offered_coef=0.0)
    quiet = reference_layout(150, (0.1, 0.05, 0.025), ranks=(8, 16, 32), seed=0).adapters
    no_wait_limit = AcceptanceRule(max_wait_s=None)
    unlimited = LearnedCheck.for_profile(profile, models_dir=tmp_path, rule=no_wait_limit).evaluate(quiet, profile)
    waits = CostModelCheck(rule=no_wait_limit).evaluate(quiet, profile)
    assert [o.wait_s for o in unlimited.options] == [o.wait_s for o in waits.options]
    long_waits = [o for o in unlimited.options if o.wait_s > 10.0]
    short_waits = [o for o in unlimited.options if 0.0 < o.wait_s < 5.0]
    assert long_waits and short_waits and all(o.accepted for o in unlimited.options)
    limited = LearnedCheck.for_profile(profile, models_dir=tmp_path,
                                       rule=AcceptanceRule(max_wait_s=10.0)).evaluate(quiet, profile)
    by_slots = {o.max_loras: o for o in limited.options}
    assert all(not by_slots[o.max_loras].accepted and by_slots[o.max_loras].pressure > 1 for o in long_waits)
    assert all(by_slots[o.max_loras].accepted for o in short_waits)
    # the CLI's check by name passes the limit on
    named = make_check("learned", profile, rule=AcceptanceRule(max_wait_s=10.0))
    assert named.rule.max_wait_s == 10.0


def test_learned_check_refuses_a_kv_use_whose_queue_never_settles(tmp_path, profile):
    pytest.importorskip("loratwin.learn.evaluators")
    from loratwin.plan.judge import LearnedCheck

    stable = profile.placement.stable_kv_use
    _linear_learned_models(tmp_path / profile.name, offered_coef=0.0)  # never predicts starvation
    check = LearnedCheck.for_profile(profile, models_dir=tmp_path, rule=AcceptanceRule(max_wait_s=None),
                                     slot_grid=(24,))

    def option(rate):
        return check.evaluate(resident_share(rate), profile).options[0]

    over = option(load_at_kv_use(lambda rate: option(rate).prediction.kv_use, 0.99))
    assert over.prediction.kv_use > stable and not over.accepted
    under = option(load_at_kv_use(lambda rate: option(rate).prediction.kv_use, 0.9))
    assert under.prediction.kv_use < stable and under.accepted


def test_a_starved_share_falls_back_to_its_least_strained_max_loras(profile):
    from loratwin.plan.judge import Prediction
    from loratwin.plan.judge.verdict import judged

    # equal predicted throughput (the share's capacity) at every max_loras: strain decides
    predictions = [Prediction(s, 6000.0, slot_wait_s=w) for s, w in ((1, 6000.0), (32, 230.0), (96, 160.0))]
    refused = judged(3, 32, 6500.0, predictions, AcceptanceRule(max_wait_s=60.0), profile)
    assert not refused.ok and all(o.pressure == pytest.approx(o.wait_s / 60) for o in refused.options)
    assert refused.chosen().max_loras == 96
    # the cost model on 250 quiet adapters, too many for one GPU: every option starves
    many = reference_layout(250, (0.1, 0.05, 0.025), ranks=(8, 16, 32), seed=0).adapters
    many = [AdapterSpec(id=a.id, rank=a.rank, rate_req_s=a.rate_req_s * 1.2) for a in many]
    verdict = CostModelCheck().evaluate(many, profile)
    assert not verdict.ok
    chosen = verdict.chosen()
    assert chosen.strain == min(o.strain for o in verdict.options) and chosen.max_loras > 1


def test_plural_counts_are_singular_for_one():
    from loratwin.grammar import plural

    assert (plural(1, "GPU"), plural(2, "GPU"), plural(0, "run"), plural(1000000, "adapter")) == (
        "1 GPU", "2 GPUs", "0 runs", "1,000,000 adapters")


def test_a_load_too_light_for_the_gpus_asked_says_why_some_stay_empty(profile):
    from loratwin.workload import AdapterSpec, WorkloadSpec

    light = WorkloadSpec(adapters=(AdapterSpec(id="a", rank=8, rate_req_s=0.5), AdapterSpec(id="b", rank=16,
                                                                                           rate_req_s=0.2)))
    placed = place(light, profile, gpus=2)
    assert placed.gpu_count == 1
    assert "the load fits on 1 GPU even at x16 the rates" in placed.notes
    assert any(note.startswith("1 of the 2 GPUs gets no adapter: the load is light enough for 1 GPU")
               for note in placed.notes)
    assert not any("1 GPUs" in note for note in placed.notes)

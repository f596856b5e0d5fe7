"""recommend: placement on one GPU, judged by the acceptance rule, refined and verified with the twin."""

from __future__ import annotations

import json

import pytest

from loratwin.errors import InputError
from loratwin.learn.bundle import load_model_set, shipped_profiles
from loratwin.plan import AcceptanceRule, load_adapters, make_check, read_adapters_csv
from loratwin.plan.inputs import QUICKSTART_CSV
from loratwin.plan.judge import CostModelCheck
from loratwin.plan.placement.fill import fill_order
from loratwin.plan.recommend import apply_refinement, recommend, refine, verify, vllm_command
from loratwin.plan.recommend.published import GRID_COUNTS
from loratwin.profiles import load_profile
from loratwin.workload import AdapterSpec, WorkloadSpec

PROFILE = "llama-3.1-8b-instruct"
# a short twin window keeps the refine and verify tests quick
SHORT = AcceptanceRule(window_s=600.0)


def cycling(count, rates, ranks):
    return WorkloadSpec(adapters=tuple(
        AdapterSpec(id=f"a{i}", rank=ranks[i % len(ranks)], rate_req_s=rates[i % len(rates)]) for i in range(count)
    ))


@pytest.fixture(scope="module")
def busy():
    """More load than one GPU takes: some adapters are left for other GPUs."""
    return cycling(384, [3.2, 1.6, 0.1], [8, 8, 32])


@pytest.fixture(scope="module")
def busy_rec(busy):
    return recommend(busy, PROFILE, published=False)


def by_id(workload, ids):
    adapters = {a.id: a for a in workload.adapters}
    return [adapters[i] for i in ids]


def test_both_builtin_profiles_ship_models():
    assert {"llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"} <= set(shipped_profiles())
    for profile in ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"):
        models = load_model_set(profile)
        for target in ("best_served", "best_max_loras", "best_total_tok_s", "total_tok_s", "starved"):
            assert models.model(target)["target"] == target


def test_quiet_adapters_all_fit_on_one_gpu():
    rec = recommend(cycling(64, [0.01, 0.005], [8, 16]), PROFILE)
    assert rec.served == 64 and rec.next_step_up is None
    assert rec.max_loras <= 64 and rec.max_cpu_loras == 64 and rec.max_lora_rank == 16
    assert sorted(rec.served_adapter_ids) == sorted(f"a{i}" for i in range(64))
    assert rec.accepted and rec.check == "cost-model"
    assert 0 < rec.predicted_total_tok_s <= 1.05 * rec.offered_tok_s
    assert rec.vllm_command[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert rec.why
    json.dumps(rec.to_dict())


def test_it_serves_the_most_adapters_the_rule_accepts(busy, busy_rec):
    rec = busy_rec
    assert 1 < rec.served < 384 and rec.accepted
    # the offered load of what is served is within what one GPU can do
    assert rec.offered_tok_s < 20000
    # the served adapters are the first in the order place fills a GPU
    order = [busy.adapters[i].id for i in fill_order(busy.adapters)]
    assert rec.served_adapter_ids == order[: rec.served]
    # the estimator, judged by the rule, accepts them at the recommended max_loras ...
    check = CostModelCheck()
    served = by_id(busy, rec.served_adapter_ids)
    verdict = check.evaluate(served, PROFILE)
    assert verdict.ok and verdict.best.max_loras == rec.max_loras
    assert verdict.best.predicted_tok_s == pytest.approx(rec.predicted_total_tok_s)
    assert verdict.max_lora_rank == rec.max_lora_rank
    # ... and refuses one adapter more, at every max_loras
    step = rec.next_step_up
    assert step is not None and step["served"] == rec.served + 1 and step["adapter"] == order[rec.served]
    more = check.evaluate([*served, *by_id(busy, [step["adapter"]])], PROFILE)
    assert not more.ok and all(not o.accepted and o.pressure > 1 for o in more.options)
    # what refuses it is named: a limit with its value and what it allows
    assert "allowed" in step["refused_by"] and more.chosen().deciding in step["refused_by"]
    assert any(line.startswith(f"not {rec.served + 1}:") and step["refused_by"] in line for line in rec.why)


def test_why_names_the_tightest_limit_of_the_recommendation(busy, busy_rec):
    rec = busy_rec
    option = CostModelCheck().evaluate(by_id(busy, rec.served_adapter_ids), PROFILE).best
    assert rec.deciding_limit == option.deciding and rec.deciding_limit.endswith("allowed")
    assert any(f"--max-loras {rec.max_loras}" in line and rec.deciding_limit in line for line in rec.why)
    assert rec.predicted_wait_s == option.wait_s and rec.predicted_kv_queue_s == option.queue_s
    assert rec.limits == {"starvation_threshold": 0.1, "max_wait_s": 60.0,
                          "max_kv_use": pytest.approx(0.95), "window_s": 3600.0, "slos": []}


def test_keep_order_serves_a_prefix_of_the_given_order(busy, busy_rec):
    rec = recommend(busy, PROFILE, keep_order=True, published=False)
    ids = [a.id for a in busy.adapters]
    assert 1 <= rec.served < 384
    assert rec.served_adapter_ids == ids[: rec.served]
    assert rec.next_step_up["adapter"] == ids[rec.served]
    assert rec.selection_rule != busy_rec.selection_rule and "order given" in rec.selection_rule
    check = CostModelCheck()
    assert check.evaluate(busy.adapters[: rec.served], PROFILE).ok
    assert not check.evaluate(busy.adapters[: rec.served + 1], PROFILE).ok


@pytest.mark.parametrize("profile", ["llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"])
def test_the_published_methods_answer_comes_beside_it_for_the_shipped_profiles(profile):
    workload = cycling(64, [0.01, 0.005], [8, 16])
    answer = recommend(workload, profile).published_method
    assert answer is not None
    assert answer["served"] <= 64 and (answer["served"] in GRID_COUNTS or answer["served"] == 64)
    assert answer["max_loras"] <= answer["served"]
    assert answer["best_total_tok_s"] > 0 and answer["path"]
    assert recommend(workload, profile, published=False).published_method is None


def test_no_published_answer_where_no_models_ship():
    assert "llama-3.1-8b-instruct-reference" not in shipped_profiles()
    rec = recommend(cycling(16, [0.05], [8]), "llama-3.1-8b-instruct-reference")
    assert rec.published_method is None and rec.served == 16


def test_the_vllm_command_carries_the_flags(busy_rec):
    rec = busy_rec
    cmd = rec.vllm_command
    assert cmd[cmd.index("--max-loras") + 1] == str(rec.max_loras)
    assert cmd[cmd.index("--max-cpu-loras") + 1] == str(rec.served) == str(rec.max_cpu_loras)
    assert cmd[cmd.index("--max-lora-rank") + 1] == str(rec.max_lora_rank)
    assert "--enable-lora" in cmd and "--no-enable-prefix-caching" in cmd
    assert cmd[cmd.index("--lora-modules") + 1:] == [f"{a}=./adapters/{a}" for a in rec.served_adapter_ids]
    assert rec.vllm_command_line.startswith("vllm serve meta-llama/Llama-3.1-8B-Instruct --enable-lora --max-loras ")


def test_vllm_command_names_every_served_adapter():
    cmd = vllm_command("m", ["x", "y"], 2, 16, "/srv/adapters/")
    assert cmd[cmd.index("--max-loras") + 1] == "2"
    assert cmd[cmd.index("--max-cpu-loras") + 1] == "2"
    assert cmd[-2:] == ["x=/srv/adapters/x", "y=/srv/adapters/y"]


def test_an_adapter_too_busy_for_one_gpu_is_an_input_error_naming_it():
    workload = WorkloadSpec(adapters=(AdapterSpec(id="small", rank=8, rate_req_s=0.1),
                                      AdapterSpec(id="huge", rank=8, rate_req_s=500.0)))
    with pytest.raises(InputError, match="'huge'.*does not fit on one GPU"):
        recommend(workload, PROFILE, published=False)


def test_adapters_csv_is_read_and_mistakes_name_the_line(tmp_path):
    good = tmp_path / "a.csv"
    good.write_text("adapter_id,rank,rate\nbot,8,0.5\n\nlegal,16,0.25\n")
    spec = load_adapters(good)
    assert [(a.id, a.rank, a.rate_req_s) for a in spec.adapters] == [("bot", 8, 0.5), ("legal", 16, 0.25)]
    for text, message in [
        ("id,rank,rate\nx,8,1\n", "line 1: expected the header"),
        ("adapter_id,rank,rate\nx,eight,1\n", "line 2: rank must be an integer"),
        ("adapter_id,rank,rate\nx,8,-1\n", "line 2: rate must be a number from 0 to 1e9"),
        ("adapter_id,rank,rate\nx,8,1e308\n", "line 2: rate must be a number from 0 to 1e9"),
        ("adapter_id,rank,rate\nx,8,1\nx,8,1\n", "line 3: duplicate adapter_id 'x'"),
        ("adapter_id,rank,rate\n", "no adapters"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=message):
            read_adapters_csv(bad)
    (tmp_path / "workload.txt").write_text("")
    with pytest.raises(InputError, match="expected a .csv"):
        load_adapters(tmp_path / "workload.txt")


def test_verify_simulates_the_recommendation_and_one_adapter_more():
    spec = cycling(60, [1.0, 0.3, 0.05], [8, 16])
    rec = recommend(spec, PROFILE, rule=SHORT, published=False)
    assert rec.served < 60
    result = verify(rec, spec, PROFILE, rule=SHORT)
    points = result["points"]
    assert points[0]["recommended"] and (points[0]["served"], points[0]["max_loras"]) == (rec.served, rec.max_loras)
    assert len(points) == 2 and not points[1]["recommended"] and points[1]["served"] == rec.served + 1
    assert all(p["status"] in ("ok", "cannot start") for p in points)
    assert result["holds"] == points[0]["accepted"] and result["verdict"]
    assert result["duration_s"] == 600.0 and result["simulations"] >= 2


def test_verify_of_a_whole_list_simulates_no_adapter_more():
    spec = cycling(40, [0.05, 0.02], [8, 16])
    rec = recommend(spec, PROFILE, rule=SHORT, published=False)
    assert rec.served == 40
    result = verify(rec, spec, PROFILE, rule=SHORT)
    assert [p["recommended"] for p in result["points"]] == [True]
    assert result["holds"] and "every adapter given is served" in result["verdict"]
    assert "one adapter more" not in result["verdict"]


def test_refine_moves_the_recommendation_to_what_the_twin_accepts():
    # rank 8 adapters then three of rank 12, kept in that order: refined past them, the server
    # needs max_lora_rank 16 (the least the profile knows that admits 12)
    adapters = [AdapterSpec(id=f"a{i}", rank=8 if i < 57 else 12, rate_req_s=(1.0, 0.3, 0.05)[i % 3])
                for i in range(60)]
    spec = WorkloadSpec(adapters=tuple(adapters))
    rec = recommend(spec, PROFILE, rule=SHORT, keep_order=True, published=False)
    refinement = refine(rec, spec, PROFILE, rule=SHORT, keep_order=True)
    assert refinement["holds"] and refinement["duration_s"] == 600.0
    assert refinement["point"]["accepted"] and refinement["point"]["served"] == refinement["served"]
    check = make_check("cost-model", PROFILE, rule=SHORT)
    refined = apply_refinement(rec, refinement, spec, PROFILE, check, keep_order=True)
    assert refined.refinement["estimator_answer"]["served"] == rec.served
    # the header describes the refined point, not the estimator's first answer
    priced = check.evaluate(adapters[: refined.served], load_profile(PROFILE))
    assert refined.offered_tok_s == pytest.approx(priced.offered_tok_s)
    assert refined.predicted_total_tok_s == pytest.approx(priced.option(refined.max_loras).predicted_tok_s)
    assert refined.served > rec.served and refined.offered_tok_s > rec.offered_tok_s
    assert refined.source == "cost-model, refined with the twin"
    assert (refined.served, refined.max_loras) == (refinement["served"], refinement["max_loras"])
    assert refined.served_adapter_ids == [a.id for a in adapters[: refined.served]]
    cmd = refined.vllm_command
    assert cmd[cmd.index("--max-loras") + 1] == str(refined.max_loras)
    assert cmd[cmd.index("--max-cpu-loras") + 1] == str(refined.served)
    assert rec.served <= 57 and rec.max_lora_rank == 8
    assert refined.served > 57 and refined.max_lora_rank == 16
    assert cmd[cmd.index("--max-lora-rank") + 1] == str(refined.max_lora_rank)
    # the twin's check of the refined answer holds
    again = verify(refined, spec, PROFILE, rule=SHORT, keep_order=True)
    assert again["holds"]


def test_the_wait_limit_keeps_quiet_adapters_off_a_gpu_whose_places_are_taken():
    """Without a wait limit the quickstart list's quiet adapters wait minutes for a place in the
    batch; the default limit (60 s) keeps the recommendation where the predicted wait is at most
    a minute, and names the wait as what refuses one adapter more."""
    spec = read_adapters_csv(QUICKSTART_CSV)
    rule_only = recommend(spec, PROFILE, rule=AcceptanceRule(max_wait_s=None), published=False)
    limited = recommend(spec, PROFILE, published=False)
    assert rule_only.limits["max_wait_s"] is None and rule_only.predicted_wait_s > 60.0
    assert limited.served < rule_only.served and limited.limits["max_wait_s"] == 60.0
    assert limited.predicted_wait_s <= 60.0
    assert limited.next_step_up is not None and "wait" in limited.next_step_up["refused_by"]
    assert any("wait for a batch slot" in line for line in limited.why)


def test_verify_counts_a_long_wait_against_the_recommendation():
    spec = read_adapters_csv(QUICKSTART_CSV)
    rec = recommend(spec, PROFILE, rule=AcceptanceRule(max_wait_s=None), published=False)
    strict = verify(rec, spec, PROFILE, rule=AcceptanceRule(window_s=1200.0))
    own = strict["points"][0]
    assert own["idle_adapter_ttft_s"] is not None and own["idle_adapter_ttft_s"] > 60
    assert not own["accepted"] and "wait" in own["deciding_limit"]
    assert not strict["holds"] and "refuses" in strict["verdict"]


def test_max_wait_must_not_be_negative():
    with pytest.raises(InputError, match="--max-wait"):
        recommend(cycling(8, [0.1], [8]), PROFILE, rule=AcceptanceRule(max_wait_s=-1.0))


def test_a_refusal_names_the_limit_that_refuses():
    from loratwin.plan.judge import Prediction
    from loratwin.plan.judge.verdict import judged
    from loratwin.plan.recommend.one_gpu import _refusal
    from loratwin.profiles import load_profile

    profile = load_profile(PROFILE)
    rule = AcceptanceRule(max_wait_s=10.0)

    def refused(wait, queue, utilisation):
        prediction = Prediction(40, 1.0, slot_wait_s=wait, kv_queue_s=queue, utilisation=utilisation)
        return _refusal(judged(40, 16, 1.0, [prediction], rule, profile))

    assert "mean wait for a batch slot 30.0 s of 10.0 s allowed" in refused(30.0, 0.0, 0.5)
    assert "mean wait for KV cache admission 15.0 s of 10.0 s allowed" in refused(0.0, 15.0, 0.9)
    # the KV cache itself over its capacity: the queue is not what refuses
    assert "use of KV cache" in refused(0.0, 15.0, 1.8)

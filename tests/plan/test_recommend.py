"""recommend on small examples with the shipped models (core dependencies only)."""

from __future__ import annotations

import pytest

from loratwin.errors import InputError
from loratwin.learn.bundle import load_model_set, shipped_profiles
from loratwin.plan.recommend import (
    candidate_counts,
    read_adapters_csv,
    read_workload,
    recommend,
    verify,
    vllm_command,
)
from loratwin.workload import AdapterSpec, WorkloadSpec


def cycling(count, rates, ranks):
    return WorkloadSpec(adapters=tuple(
        AdapterSpec(id=f"a{i}", rank=ranks[i % len(ranks)], rate_req_s=rates[i % len(rates)]) for i in range(count)
    ))


def test_both_builtin_profiles_ship_models():
    assert {"llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"} <= set(shipped_profiles())
    for profile in ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"):
        models = load_model_set(profile)
        for target in ("best_served", "best_max_loras", "best_total_tok_s", "total_tok_s", "starved"):
            assert models.model(target)["target"] == target


def test_quiet_adapters_all_fit_on_one_gpu():
    rec = recommend(cycling(64, [0.01, 0.005], [8, 16]), "llama-3.1-8b-instruct")
    assert rec.served == 64
    assert rec.max_loras <= 64 and rec.max_cpu_loras == 64 and rec.max_lora_rank == 16
    assert rec.served_adapter_ids == [f"a{i}" for i in range(64)]
    assert rec.starved_probability < 0.5
    assert 0 < rec.predicted_total_tok_s <= 1.05 * rec.offered_tok_s
    assert rec.vllm_command[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert rec.why and rec.optimum_models["served"] in (16, 32, 64, 96, 128, 160, 192, 256, 320, 384)


def test_busy_adapters_leave_some_for_other_gpus():
    rec = recommend(cycling(384, [3.2, 1.6, 0.1], [8, 8, 32]), "llama-3.1-8b-instruct")
    assert rec.served < 384
    assert rec.next_step_up is not None
    # the offered load of what is served is within what one GPU can do
    assert rec.offered_tok_s < 20000


def test_candidates_cover_the_grid_up_to_the_list_and_the_list_itself():
    pairs = candidate_counts(100)
    assert (100, 96) in pairs and (100, 100) in pairs and (96, 96) in pairs
    assert all(s <= 100 and m <= s for s, m in pairs)
    assert candidate_counts(3) == [(1, 1), (2, 2), (3, 3)]


def test_vllm_command_names_every_served_adapter():
    cmd = vllm_command("m", ["x", "y"], 2, 16, "/srv/adapters/")
    assert cmd[cmd.index("--max-loras") + 1] == "2"
    assert cmd[cmd.index("--max-cpu-loras") + 1] == "2"
    assert cmd[-2:] == ["x=/srv/adapters/x", "y=/srv/adapters/y"]


def test_adapters_csv_is_read_and_mistakes_name_the_line(tmp_path):
    good = tmp_path / "a.csv"
    good.write_text("adapter_id,rank,rate\nbot,8,0.5\n\nlegal,16,0.25\n")
    spec = read_workload(good)
    assert [(a.id, a.rank, a.rate_req_s) for a in spec.adapters] == [("bot", 8, 0.5), ("legal", 16, 0.25)]
    for text, message in [
        ("id,rank,rate\nx,8,1\n", "line 1: expected the header"),
        ("adapter_id,rank,rate\nx,eight,1\n", "line 2: rank must be an integer"),
        ("adapter_id,rank,rate\nx,8,-1\n", "line 2: rate must be a number >= 0"),
        ("adapter_id,rank,rate\nx,8,1\nx,8,1\n", "line 3: duplicate adapter_id 'x'"),
        ("adapter_id,rank,rate\n", "no adapters"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=message):
            read_adapters_csv(bad)
    with pytest.raises(InputError, match="expected an adapters CSV"):
        read_workload(tmp_path / "workload.txt")


def test_verify_simulates_the_recommendation_and_its_neighbours():
    spec = cycling(40, [0.05, 0.02], [8, 16])
    rec = recommend(spec, "llama-3.1-8b-instruct")
    result = verify(rec, spec, "llama-3.1-8b-instruct", duration_s=120)
    points = result["points"]
    assert points[0]["recommended"] and (points[0]["served"], points[0]["max_loras"]) == (rec.served, rec.max_loras)
    assert len(points) >= 2 and all(p["status"] in ("ok", "cannot start") for p in points)
    assert isinstance(result["holds"], bool) and result["verdict"]


def quickstart_example():
    from importlib import resources

    with resources.as_file(resources.files("loratwin.plan") / "examples" / "quickstart.csv") as path:
        return read_adapters_csv(path)


def test_the_wait_limit_keeps_quiet_adapters_off_a_gpu_whose_places_are_taken():
    """The models learnt the GPU-level rule: on the quickstart list they put all 240 adapters on one
    GPU, where (the twin says) 103 of them starve and quiet adapters wait ten minutes for a place in
    the batch. The wait limit keeps the recommendation where the predicted wait is at most 60 s."""
    spec = quickstart_example()
    rule_only = recommend(spec, "llama-3.1-8b-instruct", max_wait_s=None)
    limited = recommend(spec, "llama-3.1-8b-instruct")
    assert rule_only.served == 240 and rule_only.max_wait_s is None and rule_only.predicted_wait_s is None
    assert limited.served < rule_only.served and limited.max_wait_s == 60.0
    assert limited.predicted_wait_s is not None and limited.predicted_wait_s <= 60.0
    assert limited.next_step_up is not None and "wait" in limited.next_step_up["reason"]
    assert any("wait for a place" in line for line in limited.why)


def test_verify_counts_a_long_wait_against_the_recommendation():
    spec = quickstart_example()
    rec = recommend(spec, "llama-3.1-8b-instruct", max_wait_s=None)  # 240 adapters on one GPU
    strict = verify(rec, spec, "llama-3.1-8b-instruct", duration_s=1200)
    own = strict["points"][0]
    assert own["wait_s"] is not None and own["wait_s"] > 60 and own["waits_too_long"]
    assert not strict["holds"]


def test_max_wait_must_not_be_negative():
    with pytest.raises(InputError, match="--max-wait"):
        recommend(cycling(8, [0.1], [8]), "llama-3.1-8b-instruct", max_wait_s=-1.0)


def test_a_refusal_names_the_limit_that_refuses():
    from loratwin.plan.recommend import Candidate, _refusal

    def refused(wait, queue, pressure):
        c = Candidate(served=40, max_loras=40, predicted_total_tok_s=1.0, starved_probability=0.0, offered_tok_s=1.0,
                      predicted_wait_s=wait, predicted_queue_s=queue, cost_model_pressure=pressure)
        return _refusal(c, 10.0)

    assert "for a place in the batch" in refused(30.0, 0.0, 3.0)
    assert "for the KV cache" in refused(0.0, 15.0, 1.5)
    # the KV cache itself over its capacity: the queue is not what refuses
    assert "capacity" in refused(0.0, 15.0, 1.8)

"""The ml_test groups of a runs file: grouping, measured runs with the published starvation rule, the pool."""

from __future__ import annotations

from loratwin.validate.ml_test import cycling_workload, group_name, load_groups, ok_runs

HEADER = "run_id,source_set,model,max_loras,served_adapters,adapter_rank_cycle,rate_values,status,total_tok_s,approx_offered_tok_s\n"
ROWS = [
    "a,ml_test,llama-3.1-8b-instruct,16,16,8 8 32,0.1 1.6 3.2,ok,950,1000",
    "b,ml_test,llama-3.1-8b-instruct,16,32,8 8 32,0.1 1.6 3.2,ok,890,1000",  # 1 - 0.89 >= 0.1: starved
    "c,ml_test,llama-3.1-8b-instruct,32,32,8 8 32,0.1 1.6 3.2,oom_at_start,,",
    "d,ml_test,llama-3.1-8b-instruct,16,16,16 16 16,0.025 1.6 3.2,ok,500,500",
    "e,dt_modelling,llama-3.1-8b-instruct,16,16,8 16,0.1 0.05,ok,1,1",  # not ml_test
    "f,ml_test,qwen-2.5-7b-instruct,16,16,8 8 32,0.1 1.6 3.2,ok,1,1",  # not llama
]


def test_groups_by_rates_and_rank_cycle(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    groups = load_groups(path)
    assert list(groups) == [((3.2, 1.6, 0.1), (8, 8, 32)), ((3.2, 1.6, 0.025), (16, 16, 16))]
    rows = groups[(3.2, 1.6, 0.1), (8, 8, 32)]
    assert [r["run_id"] for r in rows] == ["a", "b", "c"]
    assert [(r["served"], r["max_loras"], r["starved"]) for r in ok_runs(rows)] == [(16, 16, False), (32, 16, True)]
    assert group_name((3.2, 1.6, 0.1), (8, 8, 32)) == "3.2/1.6/0.1 ranks 8-8-32"


def test_the_pool_cycles_rates_from_the_highest_beside_the_ranks():
    pool = cycling_workload((3.2, 1.6, 0.1), (8, 8, 32), count=5)
    assert [(a.rate_req_s, a.rank) for a in pool.adapters] == [(3.2, 8), (1.6, 8), (0.1, 32), (3.2, 8), (1.6, 8)]

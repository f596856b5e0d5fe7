"""`--slo KEY:MS` end to end: simulate reports each SLO and the goodput; recommend and place judge
the SLOs (the twin where the cost model does not predict them) and name them in their answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .inprocess import run_main

SIM = ["simulate", "--served", "4", "--rates", "0.4,0.2", "--ranks", "8,16", "--max-loras", "2", "--duration", "60"]
NOTE = "the cost model does not predict p99 TTFT: the twin judges the SLOs"


@pytest.fixture()
def adapters_csv(tmp_path: Path) -> Path:
    path = tmp_path / "adapters.csv"
    path.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},{8 * (1 + i % 2)},{0.1 + 0.05 * (i % 3)}\n"
                                                      for i in range(12)))
    return path


def test_simulate_prints_each_slo_and_the_goodput():
    code, out, err = run_main([*SIM, "--slo", "ttft_p99:1", "--slo", "tpot_p99:60000"])
    assert code == 0, err
    assert "ttft_p99" in out and "NO" in out and "tpot_p99" in out and "yes" in out
    assert "goodput 0.000 req/s: 0.0% of the" in out  # no request gets its first token in 1 ms


def test_simulate_json_and_out_hold_the_slos(tmp_path):
    code, out, err = run_main([*SIM, "--slo", "ttft_p99:60000", "--json", "--out", str(tmp_path / "run")])
    assert code == 0, err
    doc = json.loads(out)
    (row,) = doc["slos"]
    assert row["slo"] == "ttft_p99" and row["met"] is True and row["value_ms"] == doc["summary"]["p99_ttft_all_sent_ms"]
    assert doc["goodput_req_s"] == pytest.approx(doc["summary"]["request_throughput_req_s"])
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]
    assert saved["slos"] == doc["slos"] and saved["goodput_req_s"] == doc["goodput_req_s"]


def test_simulate_seeds_report_each_seed_and_the_mean():
    code, out, err = run_main([*SIM, "--seeds", "2", "--workers", "1", "--slo", "ttft_p99:60000", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert [r["summary"]["slos"][0]["met"] for r in doc["runs"]] == [True, True]
    means = [r["summary"]["goodput_req_s"] for r in doc["runs"]]
    assert doc["goodput_req_s"] == pytest.approx(sum(means) / 2) and doc["mean"]["slos"][0]["slo"] == "ttft_p99"


def test_simulate_seeds_where_no_request_finishes():
    code, out, err = run_main(["simulate", "--served", "2", "--rates", "0.001", "--ranks", "8", "--max-loras", "2",
                               "--duration", "1", "--seeds", "2", "--workers", "1", "--slo", "ttft_p99:100"])
    assert code == 0, err
    assert "SLOs, mean of 2 seeds" in out and "Traceback" not in err


def test_recommend_meets_the_slos_with_the_twin(adapters_csv):
    code, out, err = run_main(["recommend", str(adapters_csv), "--slo", "ttft_p99:60000", "--window", "60", "--json"])
    assert code == 0, err
    rec = json.loads(out)
    assert rec["limits"]["slos"] == ["ttft_p99:60000"] and rec["limits"]["max_wait_s"] is None
    (row,) = rec["slos"]
    assert row["met"] is True and row["value_ms"] > 0 and NOTE in " ".join(rec["notes"])
    # a limit no run can meet: not even one adapter is accepted
    code, out, err = run_main(["recommend", str(adapters_csv), "--slo", "ttft_p99:1", "--window", "60"])
    assert code == 2 and "SLO ttft_p99" in err
    # --max-wait typed beside --slo holds too
    code, out, err = run_main(["recommend", str(adapters_csv), "--slo", "ttft_p99:60000", "--max-wait", "30",
                               "--window", "60"])
    assert code == 0 and "wait limit 30 s, SLOs ttft_p99:60000" in out and NOTE in out


def test_place_judges_the_slos_and_verify_on_the_twin(adapters_csv):
    code, out, err = run_main(["place", str(adapters_csv), "--slo", "ttft_p99:60000", "--slo", "itl_p99:5000",
                               "--window", "300", "--verify", "--workers", "1", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["slos"] == ["ttft_p99:60000", "itl_p99:5000"] and any(NOTE.replace("p99 TTFT", "p99 TTFT, p99 ITL")
                                                                          in n for n in doc["notes"])
    for gpu, verified in zip(doc["gpus"], doc["verification"]["gpus"], strict=True):
        assert [r["slo"] for r in gpu["slos"]] == ["ttft_p99", "itl_p99"] and all(r["met"] for r in gpu["slos"])
        assert verified["accepted"] and [r["met"] for r in verified["slos"]] == [True, True]


def test_a_starved_adapter_breaks_the_ttft_slo_and_the_output_says_why():
    # three hot adapters hold the three slots: the quiet ones' requests wait to the end
    sim = ["simulate", "--served", "6", "--rates", "3,0.05", "--ranks", "8", "--max-loras", "3", "--duration", "300",
           "--slo", "ttft_p99:2000"]
    code, out, err = run_main([*sim, "--json"])
    assert code == 0, err
    s = json.loads(out)["summary"]
    assert s["no_first_token_at_end"] > 0 and s["p99_ttft_ms"] < 2000 < s["p99_ttft_all_sent_ms"]
    code, out, err = run_main(sim)
    assert code == 0, err
    assert "NO" in out and "still without a first token at the end count their wait so far" in " ".join(out.split())


def test_refused_gpus_are_named_as_gpus_not_counts():
    from loratwin.cli.place import _gpu_list

    assert _gpu_list([0]) == "GPU 0" and _gpu_list([1, 3]) == "GPUs 1, 3"

"""`loratwin place --from` and `loratwin replay-drift` end to end on tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratwin.plan.inputs import write_adapters_csv
from loratwin.workload import WorkloadSpec, zipf_layout

from .inprocess import run_main

# period 1: a and b turn busy (their GPU is refused as it was), d appears; period 2: c vanishes
RATES = ("period,adapter_id,rank,rate\n0,a,8,2\n0,b,16,2\n0,c,8,1\n1,a,8,20\n1,b,16,20\n1,c,8,1\n1,d,8,0.5\n"
         "2,a,8,2\n2,b,16,2\n2,d,8,0.5\n")


@pytest.fixture()
def rates_csv(tmp_path: Path) -> Path:
    path = tmp_path / "rates.csv"
    path.write_text(RATES)
    return path


@pytest.mark.slow
def test_replay_drift_reports_every_period_and_writes_them(rates_csv, tmp_path):
    out = tmp_path / "drift"
    code, stdout, err = run_main(["replay-drift", str(rates_csv), "--period", "30", "--window", "300", "--json", "--out", str(out)])
    assert code == 0, err
    rows = json.loads(stdout)["rows"]
    assert [r["adapters"] for r in rows] == [3, 4, 3]
    assert rows[0]["moves"] == 0 and rows[0]["added"] == 3 and rows[0]["load_ms"] > 0
    assert rows[1]["refused_before"] == 1 and rows[1]["moves"] >= 1 and rows[1]["added"] == 1
    assert rows[1]["moves"] <= rows[1]["fresh_moves"]
    assert rows[2]["dropped"] == 1 and rows[2]["moves"] == 0
    assert all(0 < r["served_share"] <= 1 and r["simulated_s"] == 300 for r in rows)
    assert sorted(p.name for p in out.iterdir()) == [
        "period-0000.json", "period-0001.json", "period-0002.json", "periods.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["periods_done"] == 3
    period1 = json.loads((out / "period-0001.json").read_text())["placement"]
    assert {m["adapter"] for m in period1["moves"]} and all(m["from_gpu"] == 0 for m in period1["moves"])
    assert "verification" in period1
    assert (out / "periods.csv").read_text().splitlines()[0].startswith("index,start_s,simulated_s,adapters,gpus,moves")


@pytest.mark.slow
def test_an_interrupted_replay_keeps_the_finished_periods(rates_csv, tmp_path, monkeypatch):
    import loratwin.plan.drift.replay as replay

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(replay, "replace", interrupted)  # the second period's re-placement
    out = tmp_path / "drift"
    code, stdout, err = run_main(["replay-drift", str(rates_csv), "--period", "30", "--window", "300", "--out", str(out)])
    assert code == 130
    assert f"interrupted after 1 of 3 periods; they are in {out}" in err
    assert sorted(p.name for p in out.iterdir()) == ["period-0000.json", "periods.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["complete"] and summary["periods_done"] == 1 and summary["periods"] == 3


def test_an_interrupt_before_the_first_period_leaves_a_previous_result_as_it_was(rates_csv, tmp_path, monkeypatch):
    import loratwin.plan.drift.replay as replay

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(replay, "place", interrupted)  # period 0's placement
    out = tmp_path / "drift"
    out.mkdir()
    before = {"summary.json": '{"complete": true}\n', "periods.csv": "index\n0\n", "period-0000.json": "{}\n"}
    for name, text in before.items():
        (out / name).write_text(text)
    code, _, err = run_main(["replay-drift", str(rates_csv), "--period", "30", "--window", "300", "--out", str(out)])
    assert code == 130
    assert f"interrupted after 0 of 3 periods; {out} is left as it was" in err
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    fresh = tmp_path / "fresh"
    code, _, _ = run_main(["replay-drift", str(rates_csv), "--period", "30", "--window", "300", "--out", str(fresh)])
    assert code == 130 and not fresh.exists()  # nothing finished: no empty folder left behind


@pytest.mark.slow
def test_place_from_prints_the_moves_and_the_fresh_count(tmp_path):
    workload = zipf_layout(30, 20.0, 1.0, ranks=(8, 16, 32), seed=0)
    old_csv = write_adapters_csv(workload, tmp_path / "old.csv")
    placed = tmp_path / "placement.yaml"
    code, _, err = run_main(["place", str(old_csv), "--out", str(placed)])
    assert code == 0, err
    hot = {a.id for a in workload.adapters[::3]}
    new = WorkloadSpec(adapters=tuple(a.model_copy(update={"rate_req_s": a.rate_req_s * 3}) if a.id in hot else a
                                      for a in workload.adapters))
    new_csv = write_adapters_csv(new, tmp_path / "new.csv")
    code, stdout, err = run_main(["place", str(new_csv), "--from", str(placed), "--json"])
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["move_count"] == len(doc["moves"]) <= doc["fresh_moves"]
    assert all(set(m) == {"adapter", "from_gpu", "to_gpu", "rank", "load_ms"} for m in doc["moves"])
    assert doc["moved_load_ms"] == pytest.approx(sum(m["load_ms"] for m in doc["moves"]))
    assert sorted(a for g in doc["gpus"] for a in g["adapters"]) == sorted(a.id for a in new.adapters)
    code, stdout, err = run_main(["place", str(old_csv), "--from", str(placed)])
    assert code == 0, err
    assert "0 adapters moved" in stdout and "a fresh placement would move 0" in stdout


@pytest.mark.slow
def test_an_interrupted_replay_prints_the_finished_periods(rates_csv, monkeypatch):
    import loratwin.plan.drift.replay as replay

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(replay, "replace", interrupted)  # the second period's re-placement
    code, stdout, err = run_main(["replay-drift", str(rates_csv), "--period", "30", "--window", "60", "--json"])
    assert code == 130
    assert "interrupted after 1 of 3 periods" in err
    summary = json.loads(stdout)  # without --out, --json still gives the finished period, marked incomplete
    assert not summary["complete"] and summary["periods_done"] == 1 and len(summary["rows"]) == 1
    # a starved GPU is named by its index, never printed as a bare number that reads as a count
    assert "starved: none" in err or "starved: GPU " in err

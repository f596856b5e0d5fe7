"""`--warm` and `--metrics-poll`: the deployment's serving conditions change the latency tails the
client sees (first-use stalls, /metrics scrapes), never what the engine computes."""

from __future__ import annotations

import json

import pytest
import yaml

from loratwin.errors import InputError
from loratwin.profiles import load_profile
from loratwin.profiles.serving import serving_conditions

from .inprocess import run_main

# ten minutes of 96 adapters: long enough for the LoRA-info gauge to make scrapes matter (twin.lora_info)
SIM = ["simulate", "--served", "96", "--rates", "0.1,0.05", "--ranks", "8,16", "--max-loras", "32", "--duration", "600",
       "--json"]
PROFILE = load_profile("llama-3.1-8b-instruct")


def summary(*flags: str) -> dict:
    code, out, err = run_main([*SIM, *flags])
    assert code == 0, err
    return json.loads(out)["summary"]


def test_warm_and_metrics_poll_change_the_tails_only():
    cold, warm, unscraped, rare = summary(), summary("--warm"), summary("--metrics-poll", "0"), \
        summary("--metrics-poll", "30")
    assert cold["first_use_stalls"] == 96 and warm["first_use_stalls"] == 0
    assert cold["mean_scrape_blackout_ms"] > 0 and unscraped["mean_scrape_blackout_ms"] == 0
    # a scrape every 30 s instead of every 2 s: fewer blackouts, so a shorter p99 gap between tokens
    assert rare["p99_itl_ms"] < cold["p99_itl_ms"]
    for other in (warm, unscraped, rare):
        assert other["total_tok_s"] == cold["total_tok_s"] and other["steps"] == cold["steps"]
    assert warm["mean_ttft_ms"] < cold["mean_ttft_ms"]


def test_serving_conditions_leave_the_profile_alone_without_them():
    assert serving_conditions(PROFILE) is PROFILE
    assert serving_conditions(PROFILE, warm=True).tails.first_use_stall_ms == 0
    assert PROFILE.tails.first_use_stall_ms > 0  # a copy: the loaded profile is unchanged
    assert serving_conditions(PROFILE, metrics_poll_s=15).tails.metrics_poll_interval_s == 15
    assert not serving_conditions(PROFILE, metrics_poll_s=0).tails.scrape_on


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 3601.0, 1e-320, 0.0009])
def test_a_poll_interval_out_of_range_is_refused(bad):
    with pytest.raises(InputError, match=r"--metrics-poll must be 0 \(no scrapes\) or a number of seconds from 0.001"):
        serving_conditions(PROFILE, metrics_poll_s=bad)


def test_recommend_and_place_take_the_conditions(tmp_path):
    csv = tmp_path / "adapters.csv"
    csv.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},8,0.2\n" for i in range(6)))
    for command in (["recommend", str(csv)], ["place", str(csv)]):
        code, out, err = run_main([*command, "--warm", "--metrics-poll", "15", "--slo", "ttft_p99:5000",
                                   "--window", "120", "--json"])
        assert code == 0, err


def test_a_run_records_and_prints_its_serving_conditions():
    from loratwin.profiles.serving import conditions, conditions_text

    assert conditions(PROFILE) == {"warm": False, "metrics_poll_s": 2.0}
    assert conditions(serving_conditions(PROFILE, warm=True, metrics_poll_s=0)) == {"warm": True, "metrics_poll_s": 0.0}
    code, out, err = run_main([*SIM, "--warm", "--metrics-poll", "15"])
    assert code == 0, err
    assert json.loads(out)["config"]["serving"] == {"warm": True, "metrics_poll_s": 15.0}
    code, out, err = run_main([*SIM[:-1], "--slo", "ttft_p99:2000"])
    assert code == 0, err
    assert conditions_text(conditions(PROFILE)) in out  # a fresh server, scraped every 2 s


def test_the_text_says_what_a_ttft_slo_judges():
    # the quiet adapters' requests wait behind the busy ones to the end: the SLO counts them
    code, out, err = run_main(["simulate", "--served", "40", "--rates", "2,0.01", "--ranks", "8", "--max-loras", "20",
                               "--duration", "300", "--slo", "ttft_p99:2000"])
    assert code == 0, err
    text = " ".join(out.split())
    assert "TTFT mean / p50 / p99, completed requests (ms)" in text
    assert "TTFT mean / p99, every request sent (ms)" in text
    assert "TTFT SLOs judge every request sent" in text and "still without a first token at the end" in text


def test_recommend_and_place_say_the_conditions_they_assumed(tmp_path):
    csv = tmp_path / "adapters.csv"
    csv.write_text("adapter_id,rank,rate\n" + "".join(f"a{i},8,0.2\n" for i in range(6)))
    code, out, err = run_main(["recommend", str(csv), "--warm", "--metrics-poll", "15", "--window", "120"])
    assert code == 0, err
    assert "served by a warm server (no first-use stalls), /metrics scraped every 15 s" in " ".join(out.split())
    code, out, err = run_main(["recommend", str(csv), "--metrics-poll", "0", "--window", "120", "--json"])
    assert code == 0, err
    assert json.loads(out)["serving"] == {"warm": False, "metrics_poll_s": 0.0}
    placement = tmp_path / "placement.yaml"
    code, out, err = run_main(["place", str(csv), "--warm", "--window", "120", "--out", str(placement)])
    assert code == 0, err
    assert "served by a warm server" in out
    import yaml

    assert yaml.safe_load(placement.read_text())["serving"] == {"warm": True, "metrics_poll_s": 2.0}
    # simulate-cluster runs a placement under the conditions it was judged under, unless told otherwise
    code, out, err = run_main(["simulate-cluster", str(placement), str(csv), "--duration", "60"])
    assert code == 0, err
    assert "served by a warm server" in " ".join(out.split())
    code, out, err = run_main(["simulate-cluster", str(placement), str(csv), "--duration", "60", "--fresh",
                               "--metrics-poll", "0", "--json"])
    assert code == 0, err
    assert json.loads(out)["serving"] == {"warm": False, "metrics_poll_s": 0.0}


def test_a_profile_without_tail_constants_says_the_flags_change_nothing(tmp_path):
    text = load_profile("llama-3.1-8b-instruct").model_dump(mode="json")
    text.pop("tails")
    text["name"] = "notails"
    path = tmp_path / "notails.yaml"
    path.write_text(yaml.safe_dump(text))
    code, out, err = run_main(["simulate", "--profile", str(path), "--served", "4", "--rates", "0.2", "--ranks", "8",
                               "--max-loras", "4", "--duration", "60", "--fresh", "--metrics-poll", "15"])
    assert code == 0, err
    assert "profile notails has no first-use stall" in err and "--metrics-poll 15 simulates no /metrics scrapes" in err
    assert "warm server (no first-use stalls), no /metrics scrapes" in out  # what it simulated, recorded as such

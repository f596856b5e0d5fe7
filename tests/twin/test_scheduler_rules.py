"""Hand-made cases, one or more per scheduling rule, with times worked out by hand.

Unless said otherwise the profile of `make_profile()` is used: every step lasts exactly 1 ms, no
adapter load costs, a large KV cache. "step k" is the k-th engine step of the run; a step starting
at t ms ends at t+1 ms, and tokens/first tokens/finishes are stamped at the end of the step.
"""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.twin import ServerConfig, engine, simulation

from .conftest import kv_tokens_for_blocks, make_profile, ms, run_case

pytestmark = pytest.mark.usefixtures("warm_engine")


def steps_ms(result):
    return ms(result.steps["end_s"])


# --------------------------------------------------------------------------------------------
# first token and the 1 ms step


def test_short_prompt_into_idle_server_first_token_after_one_step():
    # arrives at 500 ms into an idle server: the step [500, 501) computes the 10-token prompt and
    # samples token 1 -> first token 501 ms, TTFT 1 ms; tokens 2..5 at 502..505 -> finish 505 ms.
    r = run_case([(0.5, 0, 10, 5)])
    req = r.requests
    assert ms(req["sent_s"][0]) == 500.0
    assert ms(req["first_token_s"][0]) == 501.0
    assert req["ttft_ms"][0] == pytest.approx(1.0)
    assert ms(req["finish_s"][0]) == 505.0
    assert req["generated_tokens"][0] == 5
    assert list(steps_ms(r)) == [501.0, 502.0, 503.0, 504.0, 505.0]
    assert r.summary["steps"] == 5


def test_single_output_token_request_finishes_with_its_prefill_step():
    # output 1: the prefill step's sampled token is the only one -> first token == finish == 1 ms.
    r = run_case([(0.0, 0, 10, 1)])
    assert ms(r.requests["first_token_s"][0]) == 1.0
    assert ms(r.requests["finish_s"][0]) == 1.0
    assert r.summary["steps"] == 1


# --------------------------------------------------------------------------------------------
# chunked prefill and the shared token budget


def test_chunked_prefill_300_tokens_budget_128_takes_three_steps():
    # step 0: 128, step 1: 128, step 2: 44 -> prompt complete, first token at 3 ms;
    # step 3 decodes token 2 -> finish at 4 ms.
    r = run_case([(0.0, 0, 300, 2)], max_num_batched_tokens=128, max_num_seqs=8)
    assert ms(r.requests["first_token_s"][0]) == 3.0
    assert ms(r.requests["finish_s"][0]) == 4.0
    assert r.summary["steps"] == 4
    # KV blocks (incl. the null block): 8, 16, 19 (=ceil(300/16)), then ceil(301/16)=19, +1 null
    assert list(r.steps["kv_blocks"]) == [1 + 8, 1 + 16, 1 + 19, 1 + 19]


def test_token_budget_is_shared_by_decodes_and_prefill_chunks():
    # budget 32. D0..D2 (prompt 4, long outputs) are admitted at step 0 and decode 1 token each
    # from then on. P (prompt 60) arrives at 4.5 ms and enters at the step starting at 5 ms.
    # Running first: the 3 decodes take 3 tokens, P gets 29 per step: 29 (step 5), 29 (step 6),
    # 2 (step 7) -> first token at 8 ms. (With the budget only for prefill: 32 + 28, first token
    # at 7 ms.)
    reqs = [(0.0, 0, 4, 50), (0.0, 0, 4, 50), (0.0, 0, 4, 50), (0.0045, 0, 60, 3)]
    r = run_case(reqs, max_num_batched_tokens=32, max_num_seqs=4)
    req = r.requests
    assert list(ms(req["first_token_s"])) == [1.0, 1.0, 1.0, 8.0]
    assert ms(req["finish_s"][3]) == 10.0
    assert list(r.steps["batch"][:10]) == [3, 3, 3, 3, 3, 4, 4, 4, 4, 4]
    assert ms(req["finish_s"][0]) == 50.0


def test_running_requests_are_scheduled_before_waiting_ones():
    # budget 128. R0 (prompt 300) is admitted at step 0 and chunks 128 per step. W (prompt 10)
    # arrives at 0.5 ms, but at step 1 the running R0 takes the whole budget (128) -> W waits;
    # step 2: R0 takes its last 44, W is admitted with 10 of the remaining 84.
    # Both first tokens at 3 ms (W would have had it at 2 ms if waiting requests went first).
    reqs = [(0.0, 0, 300, 3), (0.0005, 0, 10, 2)]
    r = run_case(reqs, max_num_batched_tokens=128, max_num_seqs=8)
    req = r.requests
    assert list(ms(req["first_token_s"])) == [3.0, 3.0]
    assert list(ms(req["finish_s"])) == [5.0, 4.0]
    assert list(r.steps["batch"]) == [1, 1, 2, 2, 1]


# --------------------------------------------------------------------------------------------
# max_num_seqs


def test_max_num_seqs_caps_the_running_batch():
    # 5 requests at t=0 (prompt 10, output 3), max_num_seqs 2: R0,R1 run steps 0..2 (finish 3 ms),
    # R2,R3 steps 3..5 (finish 6 ms), R4 steps 6..8 (finish 9 ms).
    r = run_case([(0.0, 0, 10, 3)] * 5, max_num_seqs=2)
    assert list(ms(r.requests["first_token_s"])) == [1.0, 1.0, 4.0, 4.0, 7.0]
    assert list(ms(r.requests["finish_s"])) == [3.0, 3.0, 6.0, 6.0, 9.0]
    assert list(r.steps["batch"]) == [2, 2, 2, 2, 2, 2, 1, 1, 1]


# --------------------------------------------------------------------------------------------
# KV blocks and FCFS admission


def test_head_request_that_does_not_fit_blocks_later_small_requests():
    # 5 usable blocks. R0 (prompt 40, output 8) holds ceil(40/16)=3 blocks for its whole life
    # (at most ceil(47/16)=3): 2 free. H (prompt 40 -> 3 blocks, arrives 0.5 ms) does not fit;
    # S (prompt 10 -> 1 block, arrives 0.6 ms) would, but FCFS stops the scan at H.
    # R0 finishes at 8 ms; step 8 admits H (3 blocks) and S (1 block): both first tokens 9 ms.
    profile = make_profile(kv_tokens_for_blocks(5))
    reqs = [(0.0, 0, 40, 8), (0.0005, 0, 40, 8), (0.0006, 0, 10, 5)]
    r = run_case(reqs, profile=profile)
    req = r.requests
    assert list(ms(req["first_token_s"])) == [1.0, 9.0, 9.0]
    assert list(ms(req["finish_s"])) == [8.0, 16.0, 13.0]
    assert r.summary["preemptions"] == 0
    # kv_blocks counts the null block: 1 + 3 while R0 runs alone
    assert list(r.steps["kv_blocks"][:8]) == [4] * 8
    assert r.steps["kv_blocks"][8] == 1 + 3 + 1
    assert r.steps["kv_blocks"].max() <= r.config["server"]["kv_cache_tokens"] // 16


def test_kv_blocks_are_16_tokens():
    # prompt 16: 1 block at the prefill step; the first decode step computes token 17 -> 2 blocks.
    r = run_case([(0.0, 0, 16, 3)])
    assert list(r.steps["kv_blocks"]) == [1 + 1, 1 + 2, 1 + 2]


# --------------------------------------------------------------------------------------------
# recompute preemption


def test_preemption_of_most_recent_request_recomputes_prompt_and_generated_tokens():
    # 4 usable blocks. R0 and R1 (prompt 32, output 20) are both admitted at step 0 (2 blocks
    # each, 0 free) and emit token 1 at 1 ms. Step 1: R0 needs a 3rd block (33 tokens), none
    # free -> R1 (admitted last) is preempted: frees 2, R0 takes 1. R1 keeps its 1 generated
    # token and must recompute 32+1=33 tokens = 3 blocks > 1 free -> waits. R0 grows to
    # ceil(51/16)=4 blocks, finishes at 20 ms (steps 0..19). Step 20 re-admits R1: it computes 33
    # tokens and samples token 2 at 21 ms; tokens 3..20 at 22..39 ms -> finish 39 ms.
    profile = make_profile(kv_tokens_for_blocks(4))
    r = run_case([(0.0, 0, 32, 20), (0.0, 0, 32, 20)], profile=profile)
    req = r.requests
    assert list(req["preemptions"]) == [0, 1]
    assert r.summary["preemptions"] == 1
    assert list(ms(req["first_token_s"])) == [1.0, 1.0]  # first token is not re-stamped
    assert list(ms(req["finish_s"])) == [20.0, 39.0]
    assert list(req["generated_tokens"]) == [20, 20]
    assert list(req["completed"]) == [True, True]
    assert list(r.steps["batch"][:3]) == [2, 1, 1]
    assert r.steps["batch"][20] == 1
    assert r.summary["steps"] == 39


def test_preempted_request_goes_to_the_front_of_the_waiting_queue():
    # 4 usable blocks, max_loras 1. R0 (a0, prompt 24, out 20) admitted at step 0 (2 blocks).
    # W (a1) arrives at 0.1 ms, R1 (a0, prompt 32, out 20) at 0.2 ms. Step 1: a0 is the only
    # adapter the batch may hold -> W skipped, R1 admitted (2 blocks, 0 free), token 1 at 2 ms.
    # Step 2: R1 needs a 3rd block (33 tokens) -> it is the most recent: preempted itself, goes to
    # the FRONT (ahead of W, which arrived earlier) and needs 33 tokens = 3 blocks > 2 free.
    # R0 finishes at 20 ms; step 20 admits R1 first (front), then a0 is active and W (a1) is
    # skipped. R1: token 2 at 21 ms ... token 20 at 39 ms. W: admitted at step 39, first token
    # 40 ms, finish 41 ms. (Were R1 put back in arrival order, W would be admitted at step 20.)
    profile = make_profile(kv_tokens_for_blocks(4))
    reqs = [(0.0, 0, 24, 20), (0.0001, 1, 10, 2), (0.0002, 0, 32, 20)]
    r = run_case(reqs, profile=profile, max_loras=1)
    req = r.requests
    assert list(req["preemptions"]) == [0, 0, 1]
    assert list(ms(req["first_token_s"])) == [1.0, 40.0, 2.0]
    assert list(ms(req["finish_s"])) == [20.0, 41.0, 39.0]
    assert list(req["generated_tokens"]) == [20, 2, 20]
    assert r.steps["batch"][2] == 1


def test_no_admission_in_a_step_with_a_preemption():
    # 5 usable blocks, budget 32. A (prompt 31, out 10) admitted at step 0 (2 blocks).
    # B (prompt 60, out 4) arrives at 0.5 ms. Step 1: A decodes (32 tokens, still 2 blocks),
    # B admitted with a 31-token chunk (2 blocks, 1 free). Step 2: A needs its 3rd block (33
    # tokens) and takes the last one; B needs 2 more for 60 tokens -> B (the most recent) is
    # preempted itself, freeing 2. B could be re-admitted right away (31 tokens, 2 blocks) but
    # no admission happens in a step with a preemption: step 2 runs A alone. The pattern repeats
    # (odd steps: B admitted, even steps: B preempted) until A finishes at 10 ms (steps 0..9).
    # Step 10: B's second chunk fits (4 blocks of 5) -> first token 11 ms; tokens 2..4 at
    # 12..14 ms. B was preempted at steps 2, 4, 6, 8.
    profile = make_profile(kv_tokens_for_blocks(5))
    reqs = [(0.0, 0, 31, 10), (0.0005, 0, 60, 4)]
    r = run_case(reqs, profile=profile, max_num_batched_tokens=32, max_num_seqs=2)
    req = r.requests
    assert list(r.steps["batch"]) == [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1]
    assert list(req["preemptions"]) == [0, 4]
    assert r.summary["preemptions"] == 4
    assert list(ms(req["first_token_s"])) == [1.0, 11.0]
    assert list(ms(req["finish_s"])) == [10.0, 14.0]
    assert list(req["generated_tokens"]) == [10, 4]


def test_request_accepted_by_the_kv_check_can_complete():
    # kv 80 tokens = 5 blocks, 4 usable (64 tokens). A request of 60 + 20 = 80 tokens passes the
    # "does it fit" check, then needs ceil(79/16) = 5 blocks: it is preempted when it reaches 65
    # tokens and can never be re-admitted (5 blocks > 4 free); the run idles to the window's end.
    # Expected: either an InputError up front, or the request completes.
    profile = make_profile(80)
    try:
        r = run_case([(0.0, 0, 60, 20)], profile=profile, duration_s=1.0)
    except InputError:
        return
    assert r.summary["completed"] == 1


# --------------------------------------------------------------------------------------------
# max_loras skip rule


def test_max_loras_skip_rule_admits_later_request_of_active_adapter_first():
    # max_loras 1. A1 (a0) runs from step 0 (out 5: tokens at 1..5 ms). B (a1) arrives at 0.5 ms,
    # A2 (a0) at 0.6 ms. Step 1: the batch holds a0 = max_loras adapters -> B is skipped and A2
    # (a0) overtakes it: first token 2 ms, finish 6 ms. B waits until no a0 request runs:
    # step 6 -> first token 7 ms, finish 8 ms.
    reqs = [(0.0, 0, 10, 5), (0.0005, 1, 10, 2), (0.0006, 0, 10, 5)]
    r = run_case(reqs, max_loras=1)
    req = r.requests
    assert list(ms(req["first_token_s"])) == [1.0, 7.0, 2.0]
    assert list(ms(req["finish_s"])) == [5.0, 8.0, 6.0]
    assert r.steps["adapters"].max() == 1
    assert list(r.steps["batch"]) == [1, 2, 2, 2, 2, 1, 1, 1]
    # initially a1 sits in the single GPU slot: a0 is loaded at step 0, a1 again at step 6
    assert r.summary["adapter_loads_cpu_to_gpu"] == 2


def test_two_adapters_share_the_batch_when_max_loras_allows():
    # same arrivals with max_loras 2: B is admitted at step 1 together with A2.
    reqs = [(0.0, 0, 10, 5), (0.0005, 1, 10, 2), (0.0006, 0, 10, 5)]
    r = run_case(reqs, max_loras=2)
    assert list(ms(r.requests["first_token_s"])) == [1.0, 2.0, 2.0]
    assert r.steps["adapters"].max() == 2


# --------------------------------------------------------------------------------------------
# time window


def test_only_requests_completed_inside_the_window_count():
    # window 50 ms. R0 (10 + 5) finishes at 5 ms; R1 (20 + 100) would finish at 100 ms: at the
    # window's end it has emitted 50 tokens and does not count. R2 arrives after the window and
    # is not part of the run.
    reqs = [(0.0, 0, 10, 5), (0.0, 0, 20, 100), (0.06, 0, 10, 5)]
    r = run_case(reqs, duration_s=0.05)
    s = r.summary
    assert s["arrived"] == 2
    assert s["completed"] == 1
    assert s["unfinished"] == 1
    assert s["input_tok_s"] == pytest.approx(10 / 0.05)
    assert s["output_tok_s"] == pytest.approx(5 / 0.05)
    assert s["total_tok_s"] == pytest.approx(15 / 0.05)
    assert s["offered_tok_s"] == pytest.approx(135 / 0.05)
    assert list(r.requests["completed"]) == [True, False]
    assert list(r.requests["generated_tokens"]) == [5, 50]
    assert np.isnan(r.requests["finish_s"][1])
    assert ms(r.steps["end_s"][-1]) == 50.0


def test_request_finishing_exactly_at_the_window_end_counts():
    # 10 + 5 tokens finish at 5 ms; window 5 ms -> completed.
    r = run_case([(0.0, 0, 10, 5)], duration_s=0.005)
    assert r.summary["completed"] == 1
    # window 4.999 ms -> the last step ends after the window: not completed
    r = run_case([(0.0, 0, 10, 5)], duration_s=0.004999)
    assert r.summary["completed"] == 0


# --------------------------------------------------------------------------------------------
# adapter slots (GPU, LRU) and the CPU cache


def test_gpu_slots_are_lru_with_cpu_to_gpu_load_cost():
    # 3 adapters, max_loras 2, CPU->GPU load 5 ms. At start all 3 are in the CPU cache and the
    # last 2 (a1, a2) in GPU slots. One short request (prompt 10, out 1: a single step) every
    # 10 ms, adapters a1, a0, a1, a2, a1, a0:
    #   0 ms a1 resident                          [0, 1)
    #  10 ms a0 load, evicts LRU a2 (unused)      [10, 16)
    #  20 ms a1 resident                          [20, 21)
    #  30 ms a2 load, evicts LRU a0 (a1 is newer) [30, 36)
    #  40 ms a1 resident (FIFO would have evicted it) [40, 41)
    #  50 ms a0 load, evicts LRU a2               [50, 56)
    profile = make_profile(gpu_load_ms=5.0, disk_load_ms=100.0)
    seq = [1, 0, 1, 2, 1, 0]
    reqs = [(0.01 * i, a, 10, 1) for i, a in enumerate(seq)]
    r = run_case(reqs, profile=profile, max_loras=2)
    assert list(steps_ms(r)) == [1.0, 16.0, 21.0, 36.0, 41.0, 56.0]
    durations = np.round(ms(r.steps["end_s"]) - np.array([0, 10, 20, 30, 40, 50]), 6)
    assert list(durations) == [1.0, 6.0, 1.0, 6.0, 1.0, 6.0]
    assert r.summary["adapter_loads_cpu_to_gpu"] == 3
    assert r.summary["adapter_loads_disk_to_cpu"] == 0
    assert [a["loads_cpu_to_gpu"] for a in r.adapters] == [2, 0, 1]
    # the load lengthens TTFT of the request that brought the adapter in
    assert list(r.requests["ttft_ms"]) == pytest.approx([1.0, 6.0, 1.0, 6.0, 1.0, 6.0])


def test_cpu_cache_lru_with_disk_load_cost():
    # 3 adapters, max_loras 1, max_cpu_loras 2, CPU->GPU 5 ms, disk->CPU 20 ms. At start the CPU
    # cache holds a0, a1 and the GPU slot a1. Requests (single step each):
    #   0 ms a1: resident                                       [0, 1)
    #  10 ms a2: not in CPU -> evict LRU a0 from CPU, disk 20 + GPU 5 (evicts a1) [10, 36)
    #  50 ms a0: not in CPU -> evict LRU a1 (a2 newer), disk 20 + GPU 5 [50, 76)
    # 100 ms a2: in CPU, not on GPU -> GPU 5                     [100, 106)
    profile = make_profile(gpu_load_ms=5.0, disk_load_ms=20.0)
    reqs = [(0.0, 1, 10, 1), (0.01, 2, 10, 1), (0.05, 0, 10, 1), (0.1, 2, 10, 1)]
    r = run_case(reqs, profile=profile, max_loras=1, max_cpu_loras=2)
    assert list(steps_ms(r)) == [1.0, 36.0, 76.0, 106.0]
    assert r.summary["adapter_loads_disk_to_cpu"] == 2
    assert r.summary["adapter_loads_cpu_to_gpu"] == 3
    assert [a["loads_disk_to_cpu"] for a in r.adapters] == [1, 0, 1]
    assert [a["loads_cpu_to_gpu"] for a in r.adapters] == [1, 0, 2]


def test_leaving_the_cpu_cache_frees_the_gpu_slot():
    # 3 adapters, max_loras 2, max_cpu_loras 2: a0, a1 in CPU and GPU at start. A request of a2
    # evicts the CPU LRU a0 (tie -> lowest index), which also leaves its GPU slot: a1 stays on the
    # GPU, so a later a1 request loads nothing. a2: disk 20 + GPU 5 -> [0, 26); a1 at 30 ms: [30, 31).
    profile = make_profile(gpu_load_ms=5.0, disk_load_ms=20.0)
    reqs = [(0.0, 2, 10, 1), (0.03, 1, 10, 1)]
    r = run_case(reqs, profile=profile, max_loras=2, max_cpu_loras=2, n_adapters=3)
    assert list(steps_ms(r)) == [26.0, 31.0]
    assert r.summary["adapter_loads_cpu_to_gpu"] == 1
    assert r.summary["adapter_loads_disk_to_cpu"] == 1


def test_preloaded_adapters_follow_the_startup_layout():
    # 4 adapters, max_cpu_loras 3, max_loras 2: CPU holds a0, a1, a2 and the GPU a1, a2.
    # a1 and a2 cost nothing, a0 a GPU load only, a3 disk + GPU.
    profile = make_profile(gpu_load_ms=5.0, disk_load_ms=20.0)
    for adapter, expected_ms in [(1, 1.0), (2, 1.0), (0, 6.0), (3, 26.0)]:
        r = run_case([(0.0, adapter, 10, 1)], profile=profile, max_loras=2, max_cpu_loras=3, n_adapters=4)
        assert list(steps_ms(r)) == [expected_ms], adapter


# --------------------------------------------------------------------------------------------
# client cap


def test_client_cap_holds_arrivals_outside_the_server():
    # client_max_waiting 1, max_num_seqs 1, each request prompt 10 out 5 (5 steps).
    # R0 runs steps 0..4 (finish 5 ms). At 1 ms R1 (arrived 0.5 ms) enters the queue; R2, R3
    # are held by the client. At 5 ms the queue still holds R1 when arrivals are taken in, so R2
    # stays out; step 5 admits R1. At 6 ms R2 enters (sent 6 ms); step 10 admits it
    # (first token 11 ms, TTFT 5 ms from sent). R3 enters at 11 ms, runs steps 15..19.
    reqs = [(0.0, 0, 10, 5), (0.0005, 0, 10, 5), (0.0006, 0, 10, 5), (0.0007, 0, 10, 5)]
    r = run_case(reqs, max_num_seqs=1, client_max_waiting=1)
    req = r.requests
    assert list(ms(req["sent_s"])) == [0.0, 0.5, 6.0, 11.0]
    assert list(ms(req["first_token_s"])) == [1.0, 6.0, 11.0, 16.0]
    assert list(ms(req["finish_s"])) == [5.0, 10.0, 15.0, 20.0]
    assert list(req["ttft_ms"]) == pytest.approx([1.0, 5.5, 5.0, 5.0])
    assert r.summary["sent"] == 4


def test_client_cap_unsent_requests_at_window_end():
    # same, window 8 ms: R2 got in at 6 ms, R3 never got in (sent NaN): summary "sent" 3; only
    # R0 (finish 5 ms) completed.
    reqs = [(0.0, 0, 10, 5), (0.0005, 0, 10, 5), (0.0006, 0, 10, 5), (0.0007, 0, 10, 5)]
    r = run_case(reqs, max_num_seqs=1, client_max_waiting=1, duration_s=0.008)
    assert r.summary["sent"] == 3
    assert ms(r.requests["sent_s"][2]) == 6.0
    assert np.isnan(r.requests["sent_s"][3])
    assert r.summary["completed"] == 1


def test_client_cap_zero_is_rejected():
    # a cap of 0 would let no request in: the configuration refuses it
    with pytest.raises(ValueError, match="client_max_waiting"):
        ServerConfig(max_loras=1, client_max_waiting=0)


# --------------------------------------------------------------------------------------------
# configuration errors


def test_infeasible_kv_configuration_raises():
    table = {8: {1: 4096, 2: None, 4: 2048}}
    profile = make_profile(kv_table=table)
    reqs = [(0.0, 0, 10, 5), (0.0, 1, 10, 5)]
    with pytest.raises(InfeasibleConfigError, match="--max-loras 2"):
        run_case(reqs, profile=profile, max_loras=2)
    # next to an infeasible point (interpolating between 2 and 4) is infeasible too
    with pytest.raises(InfeasibleConfigError):
        run_case(reqs, profile=profile, max_loras=3, n_adapters=3)
    # the feasible point runs
    assert run_case(reqs, profile=profile, max_loras=1).summary["completed"] == 2


@pytest.mark.parametrize(
    ("server", "ranks", "flag"),
    [
        ({"max_loras": 3, "max_cpu_loras": 2}, (8, 8, 8), "--max-cpu-loras"),
        ({"max_loras": 1, "max_lora_rank": 8}, (8, 16), "--max-lora-rank"),
        ({"max_loras": 1, "max_num_seqs": 64, "max_num_batched_tokens": 32}, (8,), "--max-num-batched-tokens"),
    ],
)
def test_bad_server_configuration_raises_input_error_naming_the_flag(server, ranks, flag):
    reqs = [(0.0, 0, 10, 5)]
    with pytest.raises(InputError, match=flag):
        run_case(reqs, ranks=ranks, **server)


def test_request_longer_than_the_kv_cache_raises_input_error():
    with pytest.raises(InputError, match="needs 9 KV blocks, more than the 7"):
        run_case([(0.0, 0, 100, 30)], profile=make_profile(128))


# --------------------------------------------------------------------------------------------
# the engine's log-overflow retry


def _stress_case():
    # preemptions (small KV), chunked prefill and budget gaps (small budget), many steps
    rng = np.random.default_rng(7)
    n = 80
    arrivals = np.sort(rng.uniform(0.0, 0.2, n))
    reqs = [
        (float(t), int(rng.integers(0, 3)), int(rng.integers(4, 120)), int(rng.integers(4, 60)))
        for t in arrivals
    ]
    return reqs, dict(
        profile=make_profile(kv_tokens_for_blocks(14), gpu_load_ms=0.5),
        max_loras=2,
        max_num_seqs=8,
        max_num_batched_tokens=48,
        duration_s=5.0,
    )


def test_log_overflow_retry_gives_the_same_result(monkeypatch):
    reqs, kw = _stress_case()
    normal = run_case(reqs, **kw)
    assert normal.summary["preemptions"] > 0  # the case exercises the preemption stack

    real = engine.run_engine
    first_caps: list[tuple[int, ...]] = []
    overflows: list[int] = []

    def tiny_caps(*args):
        # _run_engine doubles the cap of the log that overflowed; map its caps to 1 x that growth
        caps = args[-4:]
        if not first_caps:
            first_caps.append(tuple(caps))
        scaled = tuple(max(1, c // c0) for c, c0 in zip(caps, first_caps[0], strict=True))
        out = real(*args[:-4], *scaled)
        overflows.append(int(out[0][engine.CNT_OVERFLOW]))
        return out

    monkeypatch.setattr(engine, "run_engine", tiny_caps)
    retried = run_case(reqs, **kw)
    assert overflows[-1] == 0
    assert len(overflows) > 4
    for code in (engine.OVERFLOW_STEPS, engine.OVERFLOW_SEGMENTS, engine.OVERFLOW_GAPS, engine.OVERFLOW_PREEMPT_STACK):
        assert code in overflows, code
    assert retried.summary == normal.summary
    assert retried.adapters == normal.adapters
    for name, column in normal.requests.items():
        np.testing.assert_array_equal(retried.requests[name], column, err_msg=name)
    for name, column in normal.steps.items():
        np.testing.assert_array_equal(retried.steps[name], column, err_msg=name)
    for name, column in normal.timeseries.items():
        np.testing.assert_array_equal(retried.timeseries[name], column, err_msg=name)


def test_run_engine_sized_for_a_tiny_run_grows_its_logs(monkeypatch):
    # Call simulation._run_engine directly with the engine arguments of the stress case but sizing
    # inputs of a tiny run (1 request, 1 ns window, batch 1): its initial capacities (~1025 steps)
    # are far below the 1649 steps the case needs, so it must retry with larger logs.
    reqs, kw = _stress_case()
    normal = run_case(reqs, **kw)
    assert normal.summary["steps"] > 1100
    real = engine.run_engine
    captured = {}
    overflows = []

    def capture(*args):
        captured.setdefault("args", args[:-4])
        out = real(*args)
        overflows.append(int(out[0][engine.CNT_OVERFLOW]))
        return out

    monkeypatch.setattr(engine, "run_engine", capture)
    run_case(reqs, **kw)
    assert overflows == [0]
    overflows.clear()
    out = simulation._run_engine(captured["args"], kw["profile"], 1e-9, n_requests=1, max_num_seqs=1)
    assert overflows[0] == engine.OVERFLOW_STEPS and overflows[-1] == 0
    assert int(out[0][engine.CNT_STEPS]) == normal.summary["steps"]
    assert int(out[0][engine.CNT_PREEMPTIONS]) == normal.summary["preemptions"]
    finish_ns = out[3]
    np.testing.assert_array_equal(finish_ns, np.round(normal.requests["finish_s"] * 1e9).astype(np.int64))
    np.testing.assert_array_equal(out[4], normal.requests["generated_tokens"])
    np.testing.assert_array_equal(out[8], np.round(normal.steps["end_s"] * 1e9).astype(np.int64))

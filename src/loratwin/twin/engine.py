"""The engine loop of one vLLM V1 replica, step by step, compiled with numba.

One call simulates a whole run. Every engine step:
  1. arrivals up to now enter the waiting queue (at most `client_max_waiting` waiting, if set);
  2. the scheduler picks requests and token counts (running first, then waiting, FCFS with the
     max_loras skip rule), allocating 16-token KV blocks and preempting when they run out;
  3. the cost model prices the step (compute x LoRA factor + adapter loads + scheduler time);
  4. progress is applied at the end of the step: tokens computed, outputs emitted, finished
     requests release their blocks.

Time is kept in integer nanoseconds so that runs are exactly reproducible.
Per-step work is O(running requests + distinct adapters) and does not grow with the waiting queue:
waiting requests sit in per-adapter FIFO lists, and the global FCFS order is recovered from a lazy
stack of preempted requests (which go to the front) and the arrival order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# Request states
NOT_ARRIVED = 0
WAITING = 1
RUNNING = 2
FINISHED = 3

# Indices of the cost vector passed to the engine: the fields of profiles.step_cost.StepCost, in
# order (literals, since numba's cache does not see a change made in another file).
COST_BASE_MS = 0
COST_PER_SEQ_MS = 1
COST_PER_PREFILL_TOKEN_MS = 2
COST_PER_CONTEXT_TOKEN_MS = 3
COST_LORA_BASE = 4
COST_LORA_PER_ADAPTER = 5
COST_SCHED_INTERCEPT_MS = 6
COST_SCHED_PER_RUNNING_MS = 7
COST_SCHED_PER_WAITING_MS = 8
COST_SCHED_PER_WAITING_SLOT_SHARE_MS = 9
COST_LORA_STEP_MS = 10  # added to a step that has adapters
COST_LORA_PER_ADAPTER_MS = 11  # x distinct adapters
COST_LORA_PER_SEQ_MS = 12  # x sequences, in a step that has adapters
COST_LORA_PER_PREFILL_TOKEN_MS = 13  # x prompt tokens, in a step that has adapters
N_COST = 14

# Indices of the counters vector returned by the engine.
CNT_STEPS = 0
CNT_PREEMPTIONS = 1
CNT_GPU_LOADS = 2
CNT_DISK_LOADS = 3
CNT_SEGMENTS = 4
CNT_GAPS = 5
CNT_SAMPLES = 6
CNT_END_NS = 7
CNT_OVERFLOW = 8  # which log ran out of room (0: none); the caller retries with more
N_CNT = 9

OVERFLOW_STEPS = 1
OVERFLOW_SEGMENTS = 2
OVERFLOW_GAPS = 3
OVERFLOW_PREEMPT_STACK = 4

EMPTY_KEY = 9_223_372_036_854_775_807  # int64 max: no waiting request


class EngineOutput(NamedTuple):
    """What run_engine returns, in its order. Times in ns; steps indexed from 0."""

    counters: np.ndarray  # int64[N_CNT]
    sent_ns: np.ndarray  # per request: entered the server (-1: never)
    first_ns: np.ndarray  # per request: first token (-1: none)
    finish_ns: np.ndarray  # per request: last token (-1: unfinished)
    generated: np.ndarray  # per request: outputs emitted
    preempted: np.ndarray  # per request: times preempted
    adapter_gpu_loads: np.ndarray  # per adapter: CPU->GPU loads
    adapter_disk_loads: np.ndarray  # per adapter: disk->CPU loads
    step_end: np.ndarray  # per step: end time
    step_batch: np.ndarray  # per step: requests scheduled
    step_adapters: np.ndarray  # per step: distinct adapters scheduled
    step_kv_blocks: np.ndarray  # per step: KV blocks in use
    seg_req: np.ndarray  # streaks of consecutive emitting steps: request,
    seg_a: np.ndarray  # first step,
    seg_b: np.ndarray  # last step
    gap_req: np.ndarray  # gaps between streaks: request,
    gap_ns: np.ndarray  # gap length
    ts_t: np.ndarray  # time series: sample time,
    ts_running: np.ndarray  # running,
    ts_waiting: np.ndarray  # waiting,
    ts_kv: np.ndarray  # KV blocks in use
    step_prefill: np.ndarray  # per step: prompt tokens scheduled
    step_context: np.ndarray  # per step: tokens already cached for the scheduled requests
    step_overhead: np.ndarray  # per step: adapter loads + scheduler time (ns)


@njit(cache=True)
def _cdiv(a, b):
    return -(-a // b)


class EngineInputs(NamedTuple):
    """What run_engine takes, in its order, before the four log capacities: numba takes no named
    structure, so it is unpacked where the compiled loop is called (`run_engine(*inputs, *caps)`)."""

    arrival_ns: np.ndarray  # int64[R], sorted ascending
    req_adapter: np.ndarray  # int32[R], adapter index
    prompt_tokens: np.ndarray  # int32[R]
    output_tokens: np.ndarray  # int32[R], >= 1
    gpu_load_ns: np.ndarray  # int64[A], CPU->GPU load cost per adapter
    disk_load_ns: np.ndarray  # int64[A], disk->CPU load cost per adapter
    cpu_preloaded: np.ndarray  # bool[A], in the CPU cache at start
    gpu_preloaded: np.ndarray  # bool[A], in a GPU slot at start
    max_loras: int
    max_cpu_loras: int
    max_num_seqs: int
    token_budget: int
    num_blocks: int
    block_size: int
    client_max_waiting: int  # < 0: no cap
    duration_ns: int
    sample_interval_ns: int  # <= 0: no time series
    cost: np.ndarray  # float64[N_COST], a StepCost as a vector


@njit(cache=True)
def step_cost_ms(
    cost, running, prefill_tokens, context_tokens, adapters, all_running, waiting, max_loras, max_cpu_loras
):
    """Compute and scheduler time (ms) of a step: StepCost.compute_ms and .scheduler_ms over the
    packed vector, term for term in the same order (numba cannot call those; a test pins them)."""
    compute_ms = (
        cost[COST_BASE_MS]
        + cost[COST_PER_SEQ_MS] * running
        + cost[COST_PER_PREFILL_TOKEN_MS] * prefill_tokens
        + cost[COST_PER_CONTEXT_TOKEN_MS] * context_tokens
    )
    if adapters > 0:
        compute_ms = (
            compute_ms * (cost[COST_LORA_BASE] + cost[COST_LORA_PER_ADAPTER] * adapters)
            + cost[COST_LORA_STEP_MS]
            + cost[COST_LORA_PER_ADAPTER_MS] * adapters
            + cost[COST_LORA_PER_SEQ_MS] * running
            + cost[COST_LORA_PER_PREFILL_TOKEN_MS] * prefill_tokens
        )
    sched_ms = (
        cost[COST_SCHED_INTERCEPT_MS]
        + cost[COST_SCHED_PER_RUNNING_MS] * all_running
        + cost[COST_SCHED_PER_WAITING_MS] * waiting
        + cost[COST_SCHED_PER_WAITING_SLOT_SHARE_MS] * waiting * max_loras / max_cpu_loras
    )
    if sched_ms < 0.0:
        sched_ms = 0.0
    return compute_ms, sched_ms


# The state of a run between two `advance` calls: its arrays (a tuple, in this order) and its
# scalars (an int64 vector, indexed by these names).
STATE_ARRAYS = (
    "state", "generated", "key", "q_next", "sent_ns", "first_ns", "finish_ns", "preempted", "seg_start",
    "last_emit", "q_head", "q_head_key", "q_tail", "batch_stamp", "gpu_res", "cpu_res", "gpu_stamp",
    "cpu_stamp", "adapter_gpu_loads", "adapter_disk_loads", "active", "run", "s_adapter", "s_computed",
    "s_known", "s_blocks", "s_gen", "s_out", "s_seg", "s_last", "sched_tok", "pstack_req", "pstack_key",
    "step_end", "step_batch", "step_adapters", "step_kv_blocks", "step_prefill", "step_context",
    "step_overhead", "seg_req", "seg_a", "seg_b", "gap_req", "gap_ns", "ts_t", "ts_running", "ts_waiting",
    "ts_kv",
)
SC_NRUN = 0
SC_NSLOT = 1
SC_N_WAITING = 2
SC_NEXT_ARRIVAL = 3
SC_FIFO_HEAD = 4
SC_PSTACK_N = 5
SC_FRONT_KEY = 6
SC_FREE = 7
SC_NOW = 8
SC_PREV_INGEST = 9
SC_STEP = 10
SC_N_PREEMPTIONS = 11
SC_N_GPU_LOADS = 12
SC_N_DISK_LOADS = 13
SC_OVERFLOW = 14
SC_N_SEG = 15
SC_N_GAP = 16
SC_N_SAMPLES = 17
SC_NEXT_SAMPLE = 18
SC_N_GPU_RES = 19
SC_N_CPU_RES = 20
SC_N_FINISHED = 21
SC_LAST_FINISHED = 22
SC_LAST_END = 23
SC_DONE = 24
N_SCALARS = 25


@njit(cache=True)
def new_state(n_req, n_adapters, cpu_preloaded, gpu_preloaded, max_num_seqs, num_blocks, duration_ns,
              sample_interval_ns, step_cap, seg_cap, gap_cap, pstack_cap):
    """A run at time 0 with room for `n_req` requests, before any arrival: (arrays, scalars)."""
    # --- per-request state
    # (the hot state of running requests lives in the slot arrays below; these hold what a
    # request keeps while it waits, and its results)
    state = np.full(n_req, NOT_ARRIVED, np.int8)
    generated = np.zeros(n_req, np.int32)  # outputs emitted so far
    key = np.zeros(n_req, np.int64)  # FCFS order in the waiting queue
    q_next = np.full(n_req, -1, np.int32)  # next request of the same adapter's waiting list
    sent_ns = np.full(n_req, -1, np.int64)
    first_ns = np.full(n_req, -1, np.int64)
    finish_ns = np.full(n_req, -1, np.int64)
    preempted = np.zeros(n_req, np.int32)
    seg_start = np.full(n_req, -1, np.int64)  # step of the first emission of the current streak
    last_emit = np.full(n_req, -1, np.int64)  # step of the last emission

    # --- per-adapter state
    q_head = np.full(n_adapters, -1, np.int32)
    # key of each adapter's first waiting request (EMPTY_KEY if none): the skip-rule scan reads
    # this small array instead of chasing request ids
    q_head_key = np.full(n_adapters, EMPTY_KEY, np.int64)
    q_tail = np.full(n_adapters, -1, np.int32)
    batch_stamp = np.full(n_adapters, -1, np.int64)
    gpu_res = gpu_preloaded.copy()
    cpu_res = cpu_preloaded.copy()
    gpu_stamp = np.zeros(n_adapters, np.int64)
    cpu_stamp = np.zeros(n_adapters, np.int64)
    n_gpu_res = 0
    n_cpu_res = 0
    for a in range(n_adapters):
        if gpu_res[a]:
            n_gpu_res += 1
        if cpu_res[a]:
            n_cpu_res += 1
    adapter_gpu_loads = np.zeros(n_adapters, np.int64)
    adapter_disk_loads = np.zeros(n_adapters, np.int64)
    active = np.empty(n_adapters, np.int32)

    # --- running requests, in admission order (preemption takes from the end). Their state is
    # kept in contiguous slot arrays so that the per-step loops read memory in order.
    # Finished requests leave a hole (run[j] = -1) that is compacted away once holes are many,
    # so most steps move nothing. Slots in use: nslot; requests running: nrun.
    batch_bound = min(max_num_seqs, n_req)
    run_cap = 2 * batch_bound + 64
    run = np.empty(run_cap, np.int32)  # request id, -1 for a hole
    s_adapter = np.empty(run_cap, np.int32)
    s_computed = np.empty(run_cap, np.int32)  # tokens whose KV is computed
    s_known = np.empty(run_cap, np.int32)  # prompt + outputs emitted so far
    s_blocks = np.empty(run_cap, np.int32)
    s_gen = np.empty(run_cap, np.int32)
    s_out = np.empty(run_cap, np.int32)  # outputs to emit in total
    s_seg = np.empty(run_cap, np.int64)
    s_last = np.empty(run_cap, np.int64)
    sched_tok = np.zeros(run_cap, np.int32)

    # --- waiting queue: preempted requests; top = front of the queue
    pstack_req = np.empty(pstack_cap, np.int32)
    pstack_key = np.empty(pstack_cap, np.int64)

    # --- logs
    step_end = np.empty(step_cap, np.int64)
    step_batch = np.empty(step_cap, np.int32)
    step_adapters = np.empty(step_cap, np.int32)
    step_kv_blocks = np.empty(step_cap, np.int32)
    step_prefill = np.empty(step_cap, np.int32)
    step_context = np.empty(step_cap, np.int64)
    step_overhead = np.empty(step_cap, np.int64)
    seg_req = np.empty(seg_cap, np.int32)
    seg_a = np.empty(seg_cap, np.int64)
    seg_b = np.empty(seg_cap, np.int64)
    gap_req = np.empty(gap_cap, np.int32)
    gap_ns = np.empty(gap_cap, np.int64)
    n_samples_max = 1
    if sample_interval_ns > 0:
        n_samples_max = duration_ns // sample_interval_ns + 2
    ts_t = np.empty(n_samples_max, np.int64)
    ts_running = np.empty(n_samples_max, np.int32)
    ts_waiting = np.empty(n_samples_max, np.int32)
    ts_kv = np.empty(n_samples_max, np.int32)

    sc = np.zeros(N_SCALARS, np.int64)
    sc[SC_FREE] = num_blocks - 1  # vLLM's block pool keeps one block aside as its null block
    sc[SC_PREV_INGEST] = -1
    sc[SC_STEP] = -1
    sc[SC_NEXT_SAMPLE] = 0 if sample_interval_ns > 0 else duration_ns + 1
    sc[SC_N_GPU_RES] = n_gpu_res
    sc[SC_N_CPU_RES] = n_cpu_res
    return (
        state, generated, key, q_next, sent_ns, first_ns, finish_ns, preempted, seg_start, last_emit,
        q_head, q_head_key, q_tail, batch_stamp, gpu_res, cpu_res, gpu_stamp, cpu_stamp, adapter_gpu_loads,
        adapter_disk_loads, active, run, s_adapter, s_computed, s_known, s_blocks, s_gen, s_out, s_seg,
        s_last, sched_tok, pstack_req, pstack_key, step_end, step_batch, step_adapters, step_kv_blocks,
        step_prefill, step_context, step_overhead, seg_req, seg_a, seg_b, gap_req, gap_ns, ts_t,
        ts_running, ts_waiting, ts_kv,
    ), sc


@njit(cache=True)
def advance(
    # the EngineInputs fields, in order
    arrival_ns, req_adapter, prompt_tokens, output_tokens, gpu_load_ns, disk_load_ns, cpu_preloaded,
    gpu_preloaded, max_loras, max_cpu_loras, max_num_seqs, token_budget, num_blocks, block_size,
    client_max_waiting, duration_ns, sample_interval_ns, cost,
    # the run's state (new_state), changed in place
    st,
    sc,
    n_known,  # requests 0..n_known-1 have arrived at the client (arrival_ns[n_known-1] <= until_ns)
    until_ns,  # run the steps that start before this time
    final,  # no request will be added: run to the end of the window
):
    """Run the engine from where `sc` left it: every step that starts before `until_ns` (and
    before the end of the window). Not `final`, an idle server with no known request waits for the
    caller to add one (it may arrive later than the idle time). Stops early, with SC_OVERFLOW
    set, when a log is full: grow it and call again. SC_DONE is set when the window is over.
    A run advanced in pieces equals a run in one call: a step starts only once every arrival up to
    its start is known."""
    (
        state, generated, key, q_next, sent_ns, first_ns, finish_ns, preempted, seg_start, last_emit,
        q_head, q_head_key, q_tail, batch_stamp, gpu_res, cpu_res, gpu_stamp, cpu_stamp, adapter_gpu_loads,
        adapter_disk_loads, active, run, s_adapter, s_computed, s_known, s_blocks, s_gen, s_out, s_seg,
        s_last, sched_tok, pstack_req, pstack_key, step_end, step_batch, step_adapters, step_kv_blocks,
        step_prefill, step_context, step_overhead, seg_req, seg_a, seg_b, gap_req, gap_ns, ts_t,
        ts_running, ts_waiting, ts_kv,
    ) = st

    nrun = sc[SC_NRUN]
    nslot = sc[SC_NSLOT]
    n_waiting = sc[SC_N_WAITING]
    next_arrival = sc[SC_NEXT_ARRIVAL]
    fifo_head = sc[SC_FIFO_HEAD]
    pstack_n = sc[SC_PSTACK_N]
    front_key = sc[SC_FRONT_KEY]
    free = sc[SC_FREE]
    now = sc[SC_NOW]
    prev_ingest = sc[SC_PREV_INGEST]
    step = sc[SC_STEP]
    n_preemptions = sc[SC_N_PREEMPTIONS]
    n_gpu_loads = sc[SC_N_GPU_LOADS]
    n_disk_loads = sc[SC_N_DISK_LOADS]
    overflow = sc[SC_OVERFLOW]
    n_seg = sc[SC_N_SEG]
    n_gap = sc[SC_N_GAP]
    n_samples = sc[SC_N_SAMPLES]
    next_sample = sc[SC_NEXT_SAMPLE]
    n_gpu_res = sc[SC_N_GPU_RES]
    n_cpu_res = sc[SC_N_CPU_RES]
    n_finished = sc[SC_N_FINISHED]
    last_finished = sc[SC_LAST_FINISHED]
    last_end = sc[SC_LAST_END]
    n_req = arrival_ns.shape[0]
    batch_bound = min(max_num_seqs, n_req)
    step_cap = step_end.shape[0]
    seg_cap = seg_req.shape[0]
    gap_cap = gap_req.shape[0]
    pstack_cap = pstack_req.shape[0]
    n_adapters = gpu_load_ns.shape[0]
    overflow = 0
    paused = False

    while now < duration_ns:
        if now >= until_ns:
            paused = True
            break
        # the sampled state is the one left by the previous step (or idle)
        while now >= next_sample and next_sample < duration_ns:
            ts_t[n_samples] = next_sample
            ts_running[n_samples] = nrun
            ts_waiting[n_samples] = n_waiting
            ts_kv[n_samples] = num_blocks - free
            n_samples += 1
            next_sample += sample_interval_ns

        # 1. arrivals enter the server (the client holds them while its queue is full)
        while next_arrival < n_known and arrival_ns[next_arrival] <= now:
            if client_max_waiting >= 0 and n_waiting >= client_max_waiting:
                break
            r = next_arrival
            next_arrival += 1
            sent_ns[r] = arrival_ns[r] if arrival_ns[r] > prev_ingest else now
            state[r] = WAITING
            key[r] = r
            a = req_adapter[r]
            if q_tail[a] < 0:
                q_head[a] = r
                q_head_key[a] = r
            else:
                q_next[q_tail[a]] = r
            q_tail[a] = r
            n_waiting += 1
        prev_ingest = now

        if nrun == 0 and n_waiting == 0:
            if next_arrival >= n_known:
                if not final:
                    paused = True  # idle until the caller adds an arrival
                break
            now = arrival_ns[next_arrival]  # idle until the next request
            last_finished = 0
            continue

        # a step logs at most 2 streaks and 1 gap per request in its batch and preempts at most
        # every running request: stop early if a log could overflow (the caller retries)
        if step + 1 == step_cap:
            overflow = OVERFLOW_STEPS
        elif n_seg + 2 * batch_bound > seg_cap:
            overflow = OVERFLOW_SEGMENTS
        elif n_gap + batch_bound > gap_cap:
            overflow = OVERFLOW_GAPS
        elif pstack_n + batch_bound > pstack_cap:
            overflow = OVERFLOW_PREEMPT_STACK
        if overflow != 0:
            break
        step += 1
        # 2a. running requests first, in admission order
        budget = token_budget
        preempted_now = False
        n_batch = 0
        prefill_tok = 0
        context_tok = 0
        n_active = 0
        i = 0
        while i < nslot and budget > 0:
            r = run[i]
            if r < 0:
                sched_tok[i] = 0
                i += 1
                continue
            new = s_known[i] - s_computed[i]
            if new > budget:
                new = budget
            need = _cdiv(s_computed[i] + new, block_size) - s_blocks[i]
            if need < 0:
                need = 0
            scheduled = True
            while need > free:
                # recompute preemption of the most recently admitted request: it loses its
                # blocks and progress and goes back to the front of the waiting queue
                while run[nslot - 1] < 0:
                    nslot -= 1
                nslot -= 1
                nrun -= 1
                v = run[nslot]
                free += s_blocks[nslot]
                generated[v] = s_gen[nslot]
                seg_start[v] = s_seg[nslot]
                last_emit[v] = s_last[nslot]
                state[v] = WAITING
                front_key -= 1
                key[v] = front_key
                av = req_adapter[v]
                q_next[v] = q_head[av]
                q_head[av] = v
                q_head_key[av] = front_key
                if q_tail[av] < 0:
                    q_tail[av] = v
                pstack_req[pstack_n] = v
                pstack_key[pstack_n] = front_key
                pstack_n += 1
                n_waiting += 1
                preempted[v] += 1
                n_preemptions += 1
                preempted_now = True
                if v == r:
                    scheduled = False
                    break
            if not scheduled:
                break
            s_blocks[i] += need
            free -= need
            sched_tok[i] = new
            budget -= new
            # what the cost model needs, gathered on the way (preemption only ever removes
            # requests after this one, so it stays in the batch)
            n_batch += 1
            context_tok += s_computed[i]
            if s_known[i] - s_computed[i] > 1:
                prefill_tok += new
            a = s_adapter[i]
            if batch_stamp[a] != step:
                batch_stamp[a] = step
                active[n_active] = a
                n_active += 1
            i += 1
        for j in range(i, nslot):
            sched_tok[j] = 0  # left out of this step by the token budget

        # 2b. waiting requests, FCFS, only if nobody was preempted in this step
        if not preempted_now:
            while n_waiting > 0 and budget > 0 and nrun < max_num_seqs:
                if n_active >= max_loras:
                    # the batch holds max_loras adapters: requests of other adapters are skipped,
                    # so the next candidate is the earliest waiting request of an active adapter
                    best_key = EMPTY_KEY
                    best_adapter = -1
                    for k in range(n_active):
                        hk = q_head_key[active[k]]
                        if hk < best_key:
                            best_key = hk
                            best_adapter = active[k]
                    if best_adapter < 0:
                        break
                    r = q_head[best_adapter]
                else:
                    while pstack_n > 0:
                        v = pstack_req[pstack_n - 1]
                        if state[v] == WAITING and key[v] == pstack_key[pstack_n - 1]:
                            break
                        pstack_n -= 1
                    if pstack_n > 0:
                        r = pstack_req[pstack_n - 1]
                    else:
                        while not (state[fifo_head] == WAITING and key[fifo_head] == fifo_head):
                            fifo_head += 1
                        r = fifo_head
                known_r = prompt_tokens[r] + generated[r]
                new = known_r
                if new > budget:
                    new = budget
                need = _cdiv(new, block_size)
                if need > free:
                    break  # does not fit in the KV cache: the scan stops
                a = req_adapter[r]
                q_head[a] = q_next[r]  # r is the head of its adapter's list
                if q_head[a] < 0:
                    q_tail[a] = -1
                    q_head_key[a] = EMPTY_KEY
                else:
                    q_head_key[a] = key[q_head[a]]
                q_next[r] = -1
                n_waiting -= 1
                state[r] = RUNNING
                run[nslot] = r
                s_adapter[nslot] = a
                s_computed[nslot] = 0
                s_known[nslot] = known_r
                s_blocks[nslot] = need
                s_gen[nslot] = generated[r]
                s_out[nslot] = output_tokens[r]
                s_seg[nslot] = seg_start[r]
                s_last[nslot] = last_emit[r]
                sched_tok[nslot] = new
                nslot += 1
                nrun += 1
                free -= need
                budget -= new
                n_batch += 1
                if known_r > 1:
                    prefill_tok += new
                if batch_stamp[a] != step:
                    batch_stamp[a] = step
                    active[n_active] = a
                    n_active += 1

        # 3. price the step
        load_ns = 0
        for k in range(n_active):
            a = active[k]
            if cpu_res[a]:
                cpu_stamp[a] = step + 1
            if gpu_res[a]:
                gpu_stamp[a] = step + 1
        for k in range(n_active):
            a = active[k]
            if gpu_res[a]:
                continue
            if not cpu_res[a]:
                if n_cpu_res >= max_cpu_loras:
                    victim = -1
                    for b in range(n_adapters):
                        if cpu_res[b] and batch_stamp[b] != step and (victim < 0 or cpu_stamp[b] < cpu_stamp[victim]):
                            victim = b
                    cpu_res[victim] = False
                    n_cpu_res -= 1
                    if gpu_res[victim]:  # leaving the CPU cache also frees its GPU slot
                        gpu_res[victim] = False
                        n_gpu_res -= 1
                cpu_res[a] = True
                n_cpu_res += 1
                cpu_stamp[a] = step + 1
                load_ns += disk_load_ns[a]
                adapter_disk_loads[a] += 1
                n_disk_loads += 1
            if n_gpu_res >= max_loras:
                victim = -1
                for b in range(n_adapters):
                    if gpu_res[b] and batch_stamp[b] != step and (victim < 0 or gpu_stamp[b] < gpu_stamp[victim]):
                        victim = b
                gpu_res[victim] = False
                n_gpu_res -= 1
            gpu_res[a] = True
            n_gpu_res += 1
            gpu_stamp[a] = step + 1
            load_ns += gpu_load_ns[a]
            adapter_gpu_loads[a] += 1
            n_gpu_loads += 1

        compute_ms, sched_ms = step_cost_ms(
            cost, n_batch, prefill_tok, context_tok, n_active, nrun, n_waiting, max_loras, max_cpu_loras
        )
        compute_ns = np.int64(np.floor(compute_ms * 1e6 + 0.5))
        dt = compute_ns + np.int64(np.floor(sched_ms * 1e6 + 0.5)) + load_ns
        if dt < 1:
            dt = 1
        t_end = now + dt

        step_end[step] = t_end
        step_batch[step] = n_batch
        step_adapters[step] = n_active
        step_kv_blocks[step] = num_blocks - free
        step_prefill[step] = prefill_tok
        step_context[step] = context_tok
        step_overhead[step] = dt - compute_ns

        # 4. progress at the end of the step
        finished_now = 0
        for j in range(nslot):
            tok = sched_tok[j]
            if tok > 0:
                s_computed[j] += tok
                if s_computed[j] >= s_known[j]:
                    # the step that completes the (re)computed prompt samples one token
                    r = run[j]
                    s_gen[j] += 1
                    s_known[j] += 1
                    if s_seg[j] < 0:
                        first_ns[r] = t_end
                        s_seg[j] = step
                    elif s_last[j] != step - 1:
                        # a streak of consecutive steps ended (preemption or left out by the
                        # budget): log it and the irregular gap that follows
                        seg_req[n_seg] = r
                        seg_a[n_seg] = s_seg[j]
                        seg_b[n_seg] = s_last[j]
                        n_seg += 1
                        gap_req[n_gap] = r
                        gap_ns[n_gap] = t_end - step_end[s_last[j]]
                        n_gap += 1
                        s_seg[j] = step
                    s_last[j] = step
                    if s_gen[j] >= s_out[j]:
                        finish_ns[r] = t_end
                        n_finished += 1
                        finished_now += 1
                        generated[r] = s_gen[j]
                        state[r] = FINISHED
                        free += s_blocks[j]
                        run[j] = -1
                        nrun -= 1
                        seg_req[n_seg] = r
                        seg_a[n_seg] = s_seg[j]
                        seg_b[n_seg] = step
                        n_seg += 1
        if nslot - nrun > 8 + nrun // 8:
            keep = 0
            for j in range(nslot):
                if run[j] >= 0:
                    if keep != j:
                        run[keep] = run[j]
                        s_adapter[keep] = s_adapter[j]
                        s_computed[keep] = s_computed[j]
                        s_known[keep] = s_known[j]
                        s_blocks[keep] = s_blocks[j]
                        s_gen[keep] = s_gen[j]
                        s_out[keep] = s_out[j]
                        s_seg[keep] = s_seg[j]
                        s_last[keep] = s_last[j]
                    keep += 1
            nslot = keep
        now = t_end
        last_finished = finished_now
        last_end = t_end

    sc[SC_NRUN] = nrun
    sc[SC_NSLOT] = nslot
    sc[SC_N_WAITING] = n_waiting
    sc[SC_NEXT_ARRIVAL] = next_arrival
    sc[SC_FIFO_HEAD] = fifo_head
    sc[SC_PSTACK_N] = pstack_n
    sc[SC_FRONT_KEY] = front_key
    sc[SC_FREE] = free
    sc[SC_NOW] = now
    sc[SC_PREV_INGEST] = prev_ingest
    sc[SC_STEP] = step
    sc[SC_N_PREEMPTIONS] = n_preemptions
    sc[SC_N_GPU_LOADS] = n_gpu_loads
    sc[SC_N_DISK_LOADS] = n_disk_loads
    sc[SC_OVERFLOW] = overflow
    sc[SC_N_SEG] = n_seg
    sc[SC_N_GAP] = n_gap
    sc[SC_N_SAMPLES] = n_samples
    sc[SC_NEXT_SAMPLE] = next_sample
    sc[SC_N_GPU_RES] = n_gpu_res
    sc[SC_N_CPU_RES] = n_cpu_res
    sc[SC_N_FINISHED] = n_finished
    sc[SC_LAST_FINISHED] = last_finished
    sc[SC_LAST_END] = last_end
    sc[SC_DONE] = 1 if (not paused and overflow == 0) else 0


@njit(cache=True)
def collect(st, sc):
    """The EngineOutput tuple of a run that `advance` finished (SC_DONE) or stopped on a full log."""
    (
        state, generated, key, q_next, sent_ns, first_ns, finish_ns, preempted, seg_start, last_emit,
        q_head, q_head_key, q_tail, batch_stamp, gpu_res, cpu_res, gpu_stamp, cpu_stamp, adapter_gpu_loads,
        adapter_disk_loads, active, run, s_adapter, s_computed, s_known, s_blocks, s_gen, s_out, s_seg,
        s_last, sched_tok, pstack_req, pstack_key, step_end, step_batch, step_adapters, step_kv_blocks,
        step_prefill, step_context, step_overhead, seg_req, seg_a, seg_b, gap_req, gap_ns, ts_t,
        ts_running, ts_waiting, ts_kv,
    ) = st
    # requests still running at the end report what they emitted
    for j in range(sc[SC_NSLOT]):
        if run[j] >= 0:
            generated[run[j]] = s_gen[j]
    counters = np.zeros(N_CNT, np.int64)
    n_steps = sc[SC_STEP] + 1
    n_seg = sc[SC_N_SEG]
    n_gap = sc[SC_N_GAP]
    n_samples = sc[SC_N_SAMPLES]
    counters[CNT_STEPS] = n_steps
    counters[CNT_PREEMPTIONS] = sc[SC_N_PREEMPTIONS]
    counters[CNT_GPU_LOADS] = sc[SC_N_GPU_LOADS]
    counters[CNT_DISK_LOADS] = sc[SC_N_DISK_LOADS]
    counters[CNT_SEGMENTS] = n_seg
    counters[CNT_GAPS] = n_gap
    counters[CNT_SAMPLES] = n_samples
    counters[CNT_END_NS] = sc[SC_NOW]
    counters[CNT_OVERFLOW] = sc[SC_OVERFLOW]
    return (
        counters,
        sent_ns,
        first_ns,
        finish_ns,
        generated,
        preempted,
        adapter_gpu_loads,
        adapter_disk_loads,
        step_end[:n_steps].copy(),
        step_batch[:n_steps].copy(),
        step_adapters[:n_steps].copy(),
        step_kv_blocks[:n_steps].copy(),
        seg_req[:n_seg].copy(),
        seg_a[:n_seg].copy(),
        seg_b[:n_seg].copy(),
        gap_req[:n_gap].copy(),
        gap_ns[:n_gap].copy(),
        ts_t[:n_samples].copy(),
        ts_running[:n_samples].copy(),
        ts_waiting[:n_samples].copy(),
        ts_kv[:n_samples].copy(),
        step_prefill[:n_steps].copy(),
        step_context[:n_steps].copy(),
        step_overhead[:n_steps].copy(),
    )


@njit(cache=True)
def run_engine(
    # the EngineInputs fields, in order
    arrival_ns, req_adapter, prompt_tokens, output_tokens, gpu_load_ns, disk_load_ns, cpu_preloaded,
    gpu_preloaded, max_loras, max_cpu_loras, max_num_seqs, token_budget, num_blocks, block_size,
    client_max_waiting, duration_ns, sample_interval_ns, cost,
    # capacities of the logs: arrays are never reallocated inside the loop, which keeps numba from
    # reference-counting them on every iteration; a full log ends the run early with CNT_OVERFLOW
    # set and the caller reruns with larger ones
    step_cap,
    seg_cap,
    gap_cap,
    pstack_cap,
):
    """A whole run in one call: new_state, advance to the end with every request known, collect."""
    st, sc = new_state(arrival_ns.shape[0], gpu_load_ns.shape[0], cpu_preloaded, gpu_preloaded, max_num_seqs,
                       num_blocks, duration_ns, sample_interval_ns, step_cap, seg_cap, gap_cap, pstack_cap)
    advance(
        arrival_ns, req_adapter, prompt_tokens, output_tokens, gpu_load_ns, disk_load_ns, cpu_preloaded,
        gpu_preloaded, max_loras, max_cpu_loras, max_num_seqs, token_budget, num_blocks, block_size,
        client_max_waiting, duration_ns, sample_interval_ns, cost,
        st, sc, arrival_ns.shape[0], duration_ns, True,
    )
    return collect(st, sc)

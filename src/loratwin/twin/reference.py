"""A plain, step-by-step Python replica of the engine: the readable specification of its rules.

`run_reference` takes the fast engine's `EngineInputs` and returns an `EngineOutput` that must be
identical, array by array, to the fast engine's. It keeps one `Request` object per request, a
deque for the waiting queue, a list for the running requests and OrderedDicts for the two adapter
caches, and favours clarity over speed (it is ~100x slower).

Every engine step:
  1. arrivals up to now enter the waiting queue (at most `client_max_waiting` waiting, if set);
  2. running requests are scheduled first, in admission order, preempting the most recently
     admitted ones when KV blocks run out; then, unless someone was preempted, waiting requests
     are admitted FCFS with vLLM's max_loras skip rule;
  3. the step is priced: adapter loads, and the compute and scheduler time of the profile's
     `StepCost` (the formula `Profile.step_ms` evaluates);
  4. at the end of the step progress is applied, tokens are emitted and finished requests leave.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from loratwin.profiles.step_cost import StepCost
from loratwin.twin import engine
from loratwin.twin.engine import EngineInputs, EngineOutput


@dataclass(eq=False)  # identity: two requests are never the same
class Request:
    id: int
    adapter: int
    arrival_ns: int
    prompt: int
    output: int  # tokens to emit in total
    generated: int = 0  # emitted so far (kept across a preemption)
    computed: int = 0  # tokens whose KV is computed (reset by a preemption)
    blocks: int = 0  # KV blocks held
    scheduled: int = 0  # tokens scheduled in the current step
    sent_ns: int = -1
    first_ns: int = -1
    finish_ns: int = -1
    preemptions: int = 0
    streak_first: int = -1  # first step of the current streak of consecutive emitting steps
    last_emit: int = -1  # step of the last emission

    @property
    def known(self) -> int:
        """Tokens the request has so far: its prompt and the outputs already emitted (after a
        preemption all of them are recomputed, as one prompt)."""
        return self.prompt + self.generated


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _ms_to_ns(ms: float) -> int:
    return math.floor(ms * 1e6 + 0.5)


def _lru_victim(cache: OrderedDict, batch_adapters: list[int]) -> int:
    """The least recently used adapter of the cache that the current batch does not use."""
    return next(a for a in cache if a not in batch_adapters)


def _touch(cache: OrderedDict, adapters: list[int]) -> None:
    # adapters used in the same step are equally recent: the lower index counts as older
    for a in sorted(adapters):
        if a in cache:
            cache.move_to_end(a)


class _Replica:
    """One replica's state during a run: `run()`, then `output()`."""

    def __init__(self, inputs: EngineInputs):
        self.requests = [
            Request(i, int(adapter), int(arrival), int(prompt), int(output))
            for i, (arrival, adapter, prompt, output) in enumerate(
                zip(inputs.arrival_ns, inputs.req_adapter, inputs.prompt_tokens, inputs.output_tokens, strict=True)
            )
        ]
        self.gpu_load_ns = [int(x) for x in inputs.gpu_load_ns]
        self.disk_load_ns = [int(x) for x in inputs.disk_load_ns]
        self.max_loras = int(inputs.max_loras)
        self.max_cpu_loras = int(inputs.max_cpu_loras)
        self.max_num_seqs = int(inputs.max_num_seqs)
        self.token_budget = int(inputs.token_budget)
        self.num_blocks = int(inputs.num_blocks)
        self.block_size = int(inputs.block_size)
        self.client_max_waiting = int(inputs.client_max_waiting)  # < 0: no cap
        self.duration_ns = int(inputs.duration_ns)
        self.sample_interval_ns = int(inputs.sample_interval_ns)  # <= 0: no time series
        self.cost = StepCost(*(float(c) for c in inputs.cost))

        n_adapters = len(self.gpu_load_ns)
        # preloaded adapters are equally recent: the lower index counts as older
        self.cpu: OrderedDict[int, None] = OrderedDict((a, None) for a in range(n_adapters) if inputs.cpu_preloaded[a])
        self.gpu: OrderedDict[int, None] = OrderedDict((a, None) for a in range(n_adapters) if inputs.gpu_preloaded[a])
        self.adapter_gpu_loads = [0] * n_adapters
        self.adapter_disk_loads = [0] * n_adapters

        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order
        self.free = self.num_blocks - 1  # vLLM's block pool keeps one block aside as its null block
        self.next_arrival = 0
        self.now = 0
        self.prev_boundary = -1  # the previous step boundary at which arrivals entered
        self.step = -1
        self.preemptions = 0

        self.steps: dict[str, list[int]] = {
            k: [] for k in ("end", "batch", "adapters", "kv", "prefill", "context", "overhead")
        }
        self.segments: list[tuple[int, int, int]] = []  # (request, first step, last step)
        self.gaps: list[tuple[int, int]] = []  # (request, ns)
        self.samples: list[tuple[int, int, int, int]] = []  # (t, running, waiting, kv blocks)
        self.next_sample = 0 if self.sample_interval_ns > 0 else self.duration_ns + 1

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        while self.now < self.duration_ns:
            self._sample()
            self._ingest_arrivals()
            if not self.running and not self.waiting:
                if self.next_arrival >= len(self.requests):
                    break
                self.now = self.requests[self.next_arrival].arrival_ns  # idle until the next request
                continue
            self.step += 1
            self._schedule()
            t_end = self._price()
            self._progress(t_end)
            self.now = t_end

    def _sample(self) -> None:
        # a sample records the state left by the previous step (or idle)
        while self.now >= self.next_sample and self.next_sample < self.duration_ns:
            self.samples.append(
                (self.next_sample, len(self.running), len(self.waiting), self.num_blocks - self.free)
            )
            self.next_sample += self.sample_interval_ns

    def _ingest_arrivals(self) -> None:
        # the client holds arrivals while its queue is full; they enter at step boundaries
        while self.next_arrival < len(self.requests):
            r = self.requests[self.next_arrival]
            if r.arrival_ns > self.now:
                break
            if self.client_max_waiting >= 0 and len(self.waiting) >= self.client_max_waiting:
                break
            # sent on arrival if it arrived since the previous boundary, else when the queue made room
            r.sent_ns = r.arrival_ns if r.arrival_ns > self.prev_boundary else self.now
            self.waiting.append(r)
            self.next_arrival += 1
        self.prev_boundary = self.now

    # ------------------------------------------------------------------ scheduling

    def _batch(self) -> list[Request]:
        return [r for r in self.running if r.scheduled > 0]

    def _batch_adapters(self) -> list[int]:
        """Distinct adapters of the batch, in order of first appearance."""
        return list(dict.fromkeys(r.adapter for r in self._batch()))

    def _schedule(self) -> None:
        for r in self.running:
            r.scheduled = 0
        budget = self.token_budget
        preempted_now = False

        # running requests first, in admission order
        i = 0
        while i < len(self.running) and budget > 0:
            r = self.running[i]
            new = min(r.known - r.computed, budget)
            need = max(0, _cdiv(r.computed + new, self.block_size) - r.blocks)
            while need > self.free and i < len(self.running):
                # recompute preemption of the most recently admitted request (possibly r itself)
                self._preempt(self.running.pop())
                preempted_now = True
            if i == len(self.running):
                break  # r itself was preempted
            r.blocks += need
            self.free -= need
            r.scheduled = new
            budget -= new
            i += 1

        # waiting requests next, only if nobody was preempted in this step
        if not preempted_now:
            self._admit_waiting(budget)

    def _preempt(self, r: Request) -> None:
        self.free += r.blocks
        r.blocks = 0
        r.computed = 0
        r.scheduled = 0
        r.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(r)  # back to the front of the queue

    def _admit_waiting(self, budget: int) -> None:
        active = set(self._batch_adapters())
        skipped: list[Request] = []
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            r = self.waiting[0]
            if len(active) >= self.max_loras and r.adapter not in active:
                skipped.append(self.waiting.popleft())  # no slot for its adapter in this batch
                continue
            new = min(r.known, budget)
            need = _cdiv(new, self.block_size)
            if need > self.free:
                break  # does not fit in the KV cache: the scan stops
            self.waiting.popleft()
            self.running.append(r)
            r.computed = 0
            r.blocks = need
            r.scheduled = new
            self.free -= need
            budget -= new
            active.add(r.adapter)
        # skipped requests keep their places at the head of the queue
        self.waiting.extendleft(reversed(skipped))

    # ------------------------------------------------------------------ pricing

    def _load_adapters(self, batch_adapters: list[int]) -> int:
        """Bring the batch's adapters onto the GPU; returns the load time (ns)."""
        _touch(self.cpu, batch_adapters)
        _touch(self.gpu, batch_adapters)
        load_ns = 0
        for a in batch_adapters:
            if a in self.gpu:
                continue
            if a not in self.cpu:
                if len(self.cpu) >= self.max_cpu_loras:
                    victim = _lru_victim(self.cpu, batch_adapters)
                    del self.cpu[victim]
                    self.gpu.pop(victim, None)  # leaving the CPU cache also frees its GPU slot
                self.cpu[a] = None
                load_ns += self.disk_load_ns[a]
                self.adapter_disk_loads[a] += 1
            if len(self.gpu) >= self.max_loras:
                del self.gpu[_lru_victim(self.gpu, batch_adapters)]
            self.gpu[a] = None
            load_ns += self.gpu_load_ns[a]
            self.adapter_gpu_loads[a] += 1
        # the loaded adapters joined at the end: all the batch's adapters are equally recent now
        _touch(self.cpu, batch_adapters)
        _touch(self.gpu, batch_adapters)
        return load_ns

    def _price(self) -> int:
        batch = self._batch()
        adapters = self._batch_adapters()
        n_seqs = len(batch)
        n_adapters = len(adapters)
        # prompt tokens: scheduled for a request with more than one token left to compute
        prefill = sum(r.scheduled for r in batch if r.known - r.computed > 1)
        context = sum(r.computed for r in batch)
        load_ns = self._load_adapters(adapters)
        compute_ms = self.cost.compute_ms(n_seqs, prefill, context, n_adapters)
        # the scheduler's time depends on the queues after admission
        sched_ms = self.cost.scheduler_ms(len(self.running), len(self.waiting), self.max_loras, self.max_cpu_loras)
        compute_ns = _ms_to_ns(compute_ms)
        dt = max(1, compute_ns + _ms_to_ns(sched_ms) + load_ns)  # time always advances
        t_end = self.now + dt

        s = self.steps
        s["end"].append(t_end)
        s["batch"].append(n_seqs)
        s["adapters"].append(n_adapters)
        s["kv"].append(self.num_blocks - self.free)
        s["prefill"].append(prefill)
        s["context"].append(context)
        s["overhead"].append(dt - compute_ns)
        return t_end

    # ------------------------------------------------------------------ progress

    def _progress(self, t_end: int) -> None:
        step = self.step
        finished = []
        for r in self.running:
            if r.scheduled == 0:
                continue
            r.computed += r.scheduled
            if r.computed < r.known:
                continue  # a prompt chunk: no token yet
            # the step that completes the (re)computed prompt, or a decode step, emits one token
            r.generated += 1
            if r.streak_first < 0:
                r.first_ns = t_end
                r.streak_first = step
            elif r.last_emit != step - 1:
                # the streak of consecutive steps ended (preemption, or left out by the budget):
                # log it and the irregular gap that follows
                self.segments.append((r.id, r.streak_first, r.last_emit))
                self.gaps.append((r.id, t_end - self.steps["end"][r.last_emit]))
                r.streak_first = step
            r.last_emit = step
            if r.generated >= r.output:
                r.finish_ns = t_end
                self.segments.append((r.id, r.streak_first, step))
                finished.append(r)
        for r in finished:
            self.free += r.blocks
            r.blocks = 0
            self.running.remove(r)

    # ------------------------------------------------------------------ output

    def output(self) -> EngineOutput:
        reqs = self.requests
        counters = np.zeros(engine.N_CNT, np.int64)
        counters[engine.CNT_STEPS] = self.step + 1
        counters[engine.CNT_PREEMPTIONS] = self.preemptions
        counters[engine.CNT_GPU_LOADS] = sum(self.adapter_gpu_loads)
        counters[engine.CNT_DISK_LOADS] = sum(self.adapter_disk_loads)
        counters[engine.CNT_SEGMENTS] = len(self.segments)
        counters[engine.CNT_GAPS] = len(self.gaps)
        counters[engine.CNT_SAMPLES] = len(self.samples)
        counters[engine.CNT_END_NS] = self.now
        counters[engine.CNT_OVERFLOW] = 0  # the logs here grow as needed

        def col(values, dtype):
            return np.array(list(values), dtype)

        seg = [[x[k] for x in self.segments] for k in range(3)]
        gap = [[x[k] for x in self.gaps] for k in range(2)]
        ts = [[x[k] for x in self.samples] for k in range(4)]
        s = self.steps
        return EngineOutput(
            counters=counters,
            sent_ns=col([r.sent_ns for r in reqs], np.int64),
            first_ns=col([r.first_ns for r in reqs], np.int64),
            finish_ns=col([r.finish_ns for r in reqs], np.int64),
            generated=col([r.generated for r in reqs], np.int32),
            preempted=col([r.preemptions for r in reqs], np.int32),
            adapter_gpu_loads=col(self.adapter_gpu_loads, np.int64),
            adapter_disk_loads=col(self.adapter_disk_loads, np.int64),
            step_end=col(s["end"], np.int64),
            step_batch=col(s["batch"], np.int32),
            step_adapters=col(s["adapters"], np.int32),
            step_kv_blocks=col(s["kv"], np.int32),
            seg_req=col(seg[0], np.int32),
            seg_a=col(seg[1], np.int64),
            seg_b=col(seg[2], np.int64),
            gap_req=col(gap[0], np.int32),
            gap_ns=col(gap[1], np.int64),
            ts_t=col(ts[0], np.int64),
            ts_running=col(ts[1], np.int32),
            ts_waiting=col(ts[2], np.int32),
            ts_kv=col(ts[3], np.int32),
            step_prefill=col(s["prefill"], np.int32),
            step_context=col(s["context"], np.int64),
            step_overhead=col(s["overhead"], np.int64),
        )


def run_reference(*inputs) -> EngineOutput:
    """Simulate the run step by step: `run_reference(inputs)` with an `EngineInputs`, or with its
    fields in order as `engine.run_engine` takes them (`run_reference(*inputs)`); the same
    `EngineOutput` as the fast engine."""
    if len(inputs) == 1 and isinstance(inputs[0], EngineInputs):
        (inputs,) = inputs
    else:
        inputs = EngineInputs(*inputs)
    replica = _Replica(inputs)
    replica.run()
    return replica.output()

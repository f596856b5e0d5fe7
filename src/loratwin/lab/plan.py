"""The short list of real vLLM runs that calibrates a profile: `plan_experiments(arch, gpu, flags)`.

Each run is described in the terms of a row of the reference runs table (real-vllm/runs.csv): served
adapters, `max_loras`, `max_lora_rank`, the rank cycle of the served adapters, per-adapter rate levels
and how many adapters have each, the send window. A fit can therefore run the planned runs, or pick the
measured runs nearest to them. The list is chosen so that each term of a profile is identified:

* base step: 8 adapters, load from light to saturating (decode time against the running batch);
* LoRA: `max_loras` varied with 8 adapters in use, adapters in use varied (served = `max_loras`), and
  `max_lora_rank` varied at a fixed layout;
* prefill and context: prompt-only requests (random dataset, 1024 in / 16 out) at two rates, and long
  requests (1024 in / 1024 out);
* adapter loads: served adapters well above `max_loras`, mixed ranks;
* scheduler overhead and starvation: saturating load over many adapters and few slots;
* KV capacity: every run's server log gives the KV cache size at its (`max_loras`, `max_lora_rank`); two
  short runs probe the memory edge (they may not start, which is what they measure).

Rates and slot counts are scaled to the model and GPU by the rough sizes in `loratwin.lab.capacity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from loratwin.errors import InputError
from loratwin.lab.capacity import EDGE_LORA_SHARE, GpuCapacity, gpu_capacity
from loratwin.profiles.derive.catalog import GpuSpec, ModelArchitecture
from loratwin.twin.config import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS

MAX_RUNS = 24
# Send window of a run: long enough for thousands of requests at most rates (5 minutes), short for the
# feasibility probes, which need only the server's start and a few requests.
RUN_S = 300.0
PROBE_S = 120.0
# GPU time a run takes beyond its send window: server start (weights, CUDA graphs, adapter
# registration) and the last requests' own latency. An allowance, not a measurement.
STARTUP_ALLOWANCE_S = 90.0
TAIL_ALLOWANCE_S = 30.0
# The largest --max-loras planned (beyond the reference grid's 384, still a measured shape).
MAX_PLANNED_SLOTS = 512
# Load levels as shares of the GPU's rough saturated throughput.
LIGHT, MEDIUM, HEAVY, SATURATING = 0.15, 0.4, 0.7, 1.25
# Three rate levels per run, in the reference runs' ratio (1.6 : 0.8 : 0.4 req/s).
RATE_WEIGHTS = (1.0, 2.0, 4.0)
# Distinct adapter folders per rank the commands cycle through (served names share them, as the
# reference runs' servers did): the adapters' weights do not change what serving them costs.
ADAPTER_FOLDERS_PER_RANK = 8
# The random dataset's lengths in the prompt-heavy and the long runs.
PREFILL_LENGTHS = (1024, 16)
CONTEXT_LENGTHS = (1024, 1024)
SHAREGPT_MAX_TOTAL_TOKENS = 2048  # what the ShareGPT filter lets through (prompt + output)


@dataclass(frozen=True)
class PlanFlags:
    """The server flags every planned run shares (vLLM's names and meanings)."""

    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    max_model_len: int = 4096
    adapter_dir: str = "./adapters"
    results_dir: str = "./runs"
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InputError(f"--gpu-memory-utilization: must be in (0, 1], got {self.gpu_memory_utilization:g}")
        for flag, value in (("--max-num-seqs", self.max_num_seqs), ("--max-num-batched-tokens", self.max_num_batched_tokens)):
            if value < 1:
                raise InputError(f"{flag}: must be >= 1, got {value}")
        if self.max_num_batched_tokens < self.max_num_seqs:  # vLLM's SchedulerConfig refuses it
            raise InputError(f"--max-num-batched-tokens {self.max_num_batched_tokens}: vLLM requires at least "
                             f"--max-num-seqs ({self.max_num_seqs})")
        longest = max(SHAREGPT_MAX_TOTAL_TOKENS, sum(PREFILL_LENGTHS), sum(CONTEXT_LENGTHS))
        if self.max_model_len < longest:
            raise InputError(f"--max-model-len: must be at least {longest} (the plan's longest request), got {self.max_model_len}")
        if self.seed < 0:
            raise InputError(f"--seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class PlannedRun:
    """One real run, in the terms of a runs.csv row, with what it is for.

    `rate_values` are per-adapter Poisson rates in req/s (ascending) and `rate_counts` the adapters at
    each. A leading rate of 0 counts served adapters no request goes to (the last ones: a run can serve
    more adapters than it uses, since vLLM needs --max-cpu-loras >= --max-loras). Adapter i has rank
    `adapter_rank_cycle[i % len]` and rate level `adapter_level(i)`.
    `dataset` is "sharegpt" or "random" (then `random_lengths` = (input, output) tokens).
    """

    run_id: str
    purpose: str
    max_loras: int
    served_adapters: int
    max_lora_rank: int
    adapter_rank_cycle: tuple[int, ...]
    rate_values: tuple[float, ...]
    rate_counts: tuple[int, ...]
    duration_s: float
    load_share: float  # offered load over the rough saturated throughput
    dataset: str = "sharegpt"
    random_lengths: tuple[int, int] | None = None
    flags: PlanFlags = field(default_factory=PlanFlags)
    number: int = 0  # its place in the plan, from 1

    @property
    def client_seed(self) -> int:
        """The benchmark clients' first seed (level k uses this + k): distinct per run, from --seed."""
        return self.flags.seed + 10 * self.number

    @property
    def max_cpu_loras(self) -> int:
        return self.served_adapters  # every served adapter stays in CPU memory, as in the reference runs

    @property
    def aggregate_rate_req_s(self) -> float:
        return math.fsum(r * c for r, c in zip(self.rate_values, self.rate_counts, strict=True))

    @property
    def estimated_gpu_s(self) -> float:
        """Send window, plus draining what saturating load leaves queued, plus the start-up and tail allowances."""
        return STARTUP_ALLOWANCE_S + self.duration_s * (1 + max(0.0, self.load_share - 1)) + TAIL_ALLOWANCE_S

    def adapter_rank(self, index: int) -> int:
        return self.adapter_rank_cycle[index % len(self.adapter_rank_cycle)]

    @property
    def idle_adapters(self) -> int:
        return self.rate_counts[0] if self.rate_values[0] == 0 else 0

    def adapter_level(self, index: int) -> int:
        """The rate level (index into `rate_values`) of adapter `index`."""
        idle = self.idle_adapters
        if index >= self.served_adapters - idle:
            return 0
        return rate_level(index, len(self.adapter_rank_cycle), len(self.rate_values) - (idle > 0)) + (idle > 0)

    def as_runs_row(self) -> dict[str, object]:
        """The configuration columns of a runs.csv row for this run."""
        return {
            "run_id": self.run_id,
            "max_loras": self.max_loras,
            "served_adapters": self.served_adapters,
            "max_lora_rank": self.max_lora_rank,
            "adapter_rank_cycle": " ".join(map(str, self.adapter_rank_cycle)),
            "rate_values": " ".join(f"{r:g}" for r in self.rate_values),
            "rate_counts": " ".join(map(str, self.rate_counts)),
            "aggregate_rate_req_s": self.aggregate_rate_req_s,
            "max_num_batched_tokens": self.flags.max_num_batched_tokens,
            "max_num_seqs": self.flags.max_num_seqs,
            "configured_time_s": self.duration_s,
        }


def rate_level(index: int, cycle_length: int, levels: int) -> int:
    """Rate levels go round-robin over whole turns of the rank cycle, so that every rank meets every level."""
    return (index // cycle_length) % levels


def plan_experiments(arch: ModelArchitecture, gpu: GpuSpec, flags: PlanFlags | None = None) -> list[PlannedRun]:
    """The calibration runs for `arch` on `gpu` (module docstring): at most MAX_RUNS, deterministic."""
    flags = flags or PlanFlags()
    flags.check()
    if flags.max_model_len > arch.max_position_embeddings:  # vLLM refuses a longer one
        raise InputError(f"--max-model-len {flags.max_model_len}: above {arch.name}'s max_position_embeddings "
                         f"({arch.max_position_embeddings})")
    cap = gpu_capacity(arch, gpu, flags.gpu_memory_utilization)
    small = _slots(min(8, cap.max_slots(16)), cap, 16)
    mid = _slots(max(small, min(32, cap.max_slots(16) // 2)), cap, 16)
    big = _slots(max(mid, cap.max_slots(16)), cap, 16)
    maker = _Maker(cap, flags)
    runs = [maker.run(f"base-{name}", "base step: decode time against the running batch, 8 adapters",
                      small, small, (16,), share) for name, share in
            (("light", LIGHT), ("medium", MEDIUM), ("heavy", HEAVY), ("saturating", SATURATING))]
    for slots in sorted({mid, big} - {small}):
        runs.append(maker.run(f"slots-{slots}", f"LoRA slots: --max-loras {slots} with {small} of its adapters in use",
                              slots, slots, (16,), HEAVY, in_use=small))
    for served in sorted({mid, big} - {small}):
        runs.append(maker.run(f"in-use-{served}", f"LoRA adapters in the batch: {served} adapters on {served} slots",
                              served, served, (16,), HEAVY, classes=3))
    for rank in (8, 32):
        slots = _slots(min(mid, cap.max_slots(rank)), cap, rank)
        runs.append(maker.run(f"rank-{rank}", f"LoRA rank: --max-lora-rank {rank}, {slots} adapters of rank {rank}",
                              slots, slots, (rank,), HEAVY, classes=3))
    prompt_req_s = cap.prefill_tok_s / PREFILL_LENGTHS[0]
    for name, share in (("light", MEDIUM), ("heavy", 0.9)):
        runs.append(maker.run(f"prefill-{name}", "prefill: prompt-only requests (1024 prompt tokens, 16 out)",
                              small, small, (16,), share, lengths=PREFILL_LENGTHS, capacity_req_s=prompt_req_s))
    long_req_s = cap.decode_tok_s / sum(CONTEXT_LENGTHS)
    runs.append(maker.run("context", "context: long requests (1024 prompt tokens, 1024 out)", small, small, (16,),
                          0.6, lengths=CONTEXT_LENGTHS, capacity_req_s=long_req_s))
    mixed_slots = _slots(min(small, cap.max_slots(32)), cap, 32)
    for served in (4 * mixed_slots, 16 * mixed_slots):
        runs.append(maker.run(f"loads-{served}", f"adapter loads: {served} adapters of ranks 8, 16, 32 on "
                              f"{mixed_slots} slots", mixed_slots, served, (8, 16, 32), MEDIUM, classes=3))
    few = _slots(max(1, min(16, cap.max_slots(16) // 4)), cap, 16)
    for served in (8 * few, 16 * few):
        runs.append(maker.run(f"queues-{served}", f"scheduler overhead and starvation: {served} adapters on {few} "
                              "slots, saturating", few, served, (8, 16), SATURATING, classes=3))
    for rank in (16, 32):
        edge = _round_slots(cap.max_slots(rank, EDGE_LORA_SHARE))
        if edge >= 1:
            runs.append(maker.run(f"kv-edge-{rank}", f"KV capacity near the memory edge: --max-loras {edge} at rank "
                                  f"{rank} (may not start: that is measured too)", edge, edge, (rank,), LIGHT,
                                  duration_s=PROBE_S))
    assert len(runs) <= MAX_RUNS and len({r.run_id for r in runs}) == len(runs)
    return [_numbered(i, run) for i, run in enumerate(runs, start=1)]


def total_gpu_s(runs: list[PlannedRun]) -> float:
    return math.fsum(r.estimated_gpu_s for r in runs)


class _Maker:
    def __init__(self, cap: GpuCapacity, flags: PlanFlags) -> None:
        self.cap, self.flags = cap, flags

    def run(self, run_id: str, purpose: str, max_loras: int, served: int, cycle: tuple[int, ...], share: float, *,
            classes: int = 1, lengths: tuple[int, int] | None = None, capacity_req_s: float | None = None,
            duration_s: float = RUN_S, in_use: int | None = None) -> PlannedRun:
        capacity = self.cap.sharegpt_req_s if capacity_req_s is None else capacity_req_s
        active = served if in_use is None else in_use
        classes = min(classes, active)
        levels = [rate_level(i, len(cycle), classes) for i in range(active)]
        counts = tuple(levels.count(k) for k in range(classes))
        weights = RATE_WEIGHTS[-classes:] if classes > 1 else (1.0,)
        unit = share * capacity / math.fsum(w * c for w, c in zip(weights, counts, strict=True))
        rates = tuple(_round_rate(w * unit) for w in weights)
        if active < served:
            rates, counts = (0.0, *rates), (served - active, *counts)
        return PlannedRun(
            run_id=run_id, purpose=purpose, max_loras=max_loras, served_adapters=served,
            max_lora_rank=max(cycle), adapter_rank_cycle=cycle, rate_values=rates, rate_counts=counts,
            duration_s=duration_s, load_share=share, dataset="sharegpt" if lengths is None else "random",
            random_lengths=lengths, flags=self.flags,
        )


def _numbered(number: int, run: PlannedRun) -> PlannedRun:
    return replace(run, run_id=f"{number:02d}-{run.run_id}", number=number)


def _round_slots(slots: int) -> int:
    """Slot counts in steps of 8 above 8 (the reference grid's), whole below, at most MAX_PLANNED_SLOTS."""
    return slots if slots <= 8 else min(slots, MAX_PLANNED_SLOTS) // 8 * 8


def _slots(slots: int, cap: GpuCapacity, rank: int) -> int:
    if slots < 1:
        raise InputError(
            f"no room for LoRA buffers of rank {rank}: one slot needs {rank * cap.lora_slot_bytes_per_rank / 2**20:.0f} MiB "
            f"and {cap.memory_after_weights_bytes / 2**30:.1f} GiB are left after the weights; "
            "raise --gpu-memory-utilization or choose a larger GPU"
        )
    return _round_slots(slots)


def _round_rate(rate: float) -> float:
    """Three significant digits: rates print as typed in commands and in runs.csv."""
    return float(f"{rate:.3g}")

"""A profile: the measured cost model of one model on one GPU, as data.

Everything the twin needs to price an engine step, an adapter load and the KV cache lives here,
so a profile fitted on another GPU or model drops in without code changes.
"""

from __future__ import annotations

import bisect
import math
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from loratwin.profiles.derive.memory import MemoryFlags
from loratwin.profiles.kv_capacity import KVCapacityModel, Rank
from loratwin.profiles.step_cost import StepCost

Values = float | np.ndarray  # a number, or numpy arrays that broadcast together

# Bounds on a profile's values, checked when it loads so that a mistake names its field there and
# not mid-run. Every number must be finite.
# A step term or a load is at most an hour: far beyond any GPU step (tens of ms) or adapter load
# (tens to hundreds of ms), so a larger value is a unit mistake; and the twin counts time in int64
# nanoseconds (292 years), which a step of 1e13 ms overflows into a step of no time at all.
MAX_TERM_MS = 3_600_000.0
# The LoRA factor multiplies the base step (the published model's is about 2, its per-adapter
# slope about 0.02): a hundred is beyond any measurement.
MAX_LORA_FACTOR = 100.0


def _within(low: float, high: float, described: str) -> AfterValidator:
    """Refuses a float outside [low, high] or not finite, saying the range as `described`."""

    def check(value: float) -> float:
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"must be a finite number {described}, got {value!r}")
        return value

    return AfterValidator(check)


def _not_bool(value):
    # YAML's true/false would pass as 1 and 0 ms
    if isinstance(value, bool):
        raise ValueError(f"must be a number of ms, got {str(value).lower()}")
    return value


TermMs = Annotated[float, BeforeValidator(_not_bool),
                   _within(0, MAX_TERM_MS, "of ms from 0 to 3,600,000 (an hour; the terms are in ms)")]
SignedTermMs = Annotated[
    float, BeforeValidator(_not_bool),
    _within(-MAX_TERM_MS, MAX_TERM_MS, "of ms from -3,600,000 to 3,600,000 (an hour; the terms are in ms)")
]
# The scheduler's intercept is fitted by least squares and comes out slightly negative (about -0.004 ms
# in the published profile, -0.2 ms in the reference one), but a step's CPU overhead cannot be much
# below nothing: beyond -10 ms the fit (or a sign or unit) is wrong.
MIN_INTERCEPT_MS = -10.0
InterceptMs = Annotated[
    float, _within(MIN_INTERCEPT_MS, MAX_TERM_MS, "of ms from -10 to 3,600,000 (a step's overhead cannot be "
                   "much below nothing; the terms are in ms)")
]
LoraFactor = Annotated[float, _within(0, MAX_LORA_FACTOR, "from 0 to 100 (a factor on the base step)")]


def _known_tokenizer(name: str | None) -> str | None:
    from loratwin.workload.length_tables import available_tables

    tables = available_tables()
    if name is not None and name not in tables:
        raise ValueError(f"unknown tokenizer {name!r}; expected the name of a length table: {', '.join(tables)}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepTimeModel(_Strict):
    """Duration of the compute of one engine step, in ms.

    base    = base_ms + per_seq_ms * N + per_prefill_token_ms * P + per_context_token_ms * K
    compute = base                                      (no adapter in the batch)
            = base * (lora_factor_base + lora_factor_per_adapter * A)
              + lora_step_ms + lora_per_rank_ms * R + lora_per_slot_ms * S
              + lora_per_adapter_ms * A + lora_per_seq_per_slot_ms * N * S
              + lora_per_prefill_token_per_slot_ms * P * S                    (with adapters)
    N: sequences scheduled, P: prompt (prefill) tokens scheduled, K: tokens already in the KV cache
    of the scheduled sequences, A: distinct adapters in the batch, S: max_loras (GPU slots),
    R: max_lora_rank. vLLM 0.8.5's LoRA kernels run over every token of a step that has an
    adapter, with thread blocks for every slot: hence the N x S and P x S terms. The step lasts compute + adapter loads + scheduler overhead
    (`Profile.step_ms` evaluates it; `StepCost` writes it out).
    """

    base_ms: TermMs
    per_seq_ms: TermMs
    per_prefill_token_ms: TermMs = 0.0
    per_context_token_ms: TermMs = 0.0
    lora_factor_base: Annotated[LoraFactor, Field(gt=0)] = 1.0  # 0 would price a LoRA step at nothing
    lora_factor_per_adapter: LoraFactor = 0.0
    lora_step_ms: TermMs = 0.0
    lora_per_rank_ms: TermMs = 0.0
    lora_per_slot_ms: TermMs = 0.0
    lora_per_adapter_ms: TermMs = 0.0
    lora_per_seq_per_slot_ms: TermMs = 0.0
    lora_per_prefill_token_per_slot_ms: TermMs = 0.0


class SchedulerOverheadModel(_Strict):
    """CPU time of the scheduler per step, in ms, from the queues after admission.

    max(0, intercept_ms + per_running_ms * B + per_waiting_ms * W + per_waiting_slot_share_ms * W * G / C)
    B running, W waiting, G max_loras, C max_cpu_loras.
    """

    # signed: a least-squares fit (the intercept and the slot-share slope come out negative)
    intercept_ms: InterceptMs = 0.0
    per_running_ms: SignedTermMs = 0.0
    per_waiting_ms: SignedTermMs = 0.0
    per_waiting_slot_share_ms: SignedTermMs = 0.0


class AdapterLoadModel(_Strict):
    """Adapter load times in ms, indexed by the server's max_lora_rank, then the adapter's rank.

    An unmeasured adapter rank costs like the nearest measured rank above it (copy size grows with
    rank). Beyond the measured ranks, a load's time grows in proportion to the adapter's bytes
    (which grow with its rank) from the largest measured rank. An unmeasured max_lora_rank uses the
    table of the largest measured max_lora_rank below it (else the smallest one). The measured loads
    grow less than in proportion (CPU->GPU loads take about as long at rank 32 as at rank 8), so
    beyond them this rule errs long.
    """

    # a table per max_lora_rank, each with at least one rank: a lookup needs a neighbour
    cpu_to_gpu_ms: Annotated[dict[Rank, Annotated[dict[Rank, TermMs], Field(min_length=1)]], Field(min_length=1)]
    disk_to_cpu_ms: Annotated[dict[Rank, Annotated[dict[Rank, TermMs], Field(min_length=1)]], Field(min_length=1)]

    @staticmethod
    def _lookup(table: dict[int, dict[int, float]], max_rank: int, rank: int) -> float:
        below = [m for m in table if m <= max_rank]
        by_rank = table[max(below) if below else min(table)]
        if rank in by_rank:
            return by_rank[rank]
        ranks = sorted(by_rank)
        i = bisect.bisect_left(ranks, rank)
        used = ranks[min(i, len(ranks) - 1)]
        return by_rank[used] * max(1.0, rank / used)

    def cpu_to_gpu(self, max_rank: int, rank: int) -> float:
        return self._lookup(self.cpu_to_gpu_ms, max_rank, rank)

    def disk_to_cpu(self, max_rank: int, rank: int) -> float:
        return self._lookup(self.disk_to_cpu_ms, max_rank, rank)


class GenerationModel(_Strict):
    """How the model's outputs relate to what was asked.

    Requests ask for up to N output tokens, but the model may stop earlier (end of sequence):
    on average it generates output_tokens_ratio x N. Applied to generated workloads; replayed
    traces already hold the tokens that were generated.
    """

    output_tokens_ratio: float = Field(default=1.0, gt=0, le=1, allow_inf_nan=False)


class PlacementModel(_Strict):
    """Constants of the placement cost model (loratwin.plan) measured on the twin, not on a GPU.

    The mean wait for KV admission, as a share of a request's run time at KV use u (running requests
    over what the cache holds), is kv_queue_scale x exp(kv_queue_steepness x (u - 1));
    stable_kv_use is the highest KV use (and share of max_num_seqs and of the token budget) a GPU
    may run at: beyond it the twin's admission queue grows for as long as the load lasts.
    """

    kv_queue_scale: float = Field(default=0.71, gt=0, allow_inf_nan=False)
    kv_queue_steepness: float = Field(default=33.4, gt=0, allow_inf_nan=False)
    stable_kv_use: float = Field(default=0.95, gt=0, le=1, allow_inf_nan=False)
    provenance: str = (
        "Fitted on the twin with the llama-3.1-8b-instruct profile (the default of both scripts), "
        "not refitted per profile. kv_queue_scale, kv_queue_steepness: scripts/fit_kv_queue.py, 320 "
        "shares at KV use 0.93-1; on 320 others the mean TTFT in the twin over the prediction has "
        "median 1.00 at KV use 0.93-0.97 and 1.08 at 0.97-1 (quartiles 0.4-1.9). stable_kv_use: "
        "scripts/check_kv_stability.py, 120 shares, seed 11; over 8 hours instead of 2 the mean "
        "TTFT grows on 25 of 27 shares at KV use 0.95-1, on 5 of 16 at 0.93-0.95, on 2 of 77 below."
    )


# the poll interval's bounds (s): below a millisecond the scrapes are back to back, and an interval
# that rounds to 0 ns would scrape from the window's start
MIN_METRICS_POLL_S = 0.001
MAX_METRICS_POLL_S = 3600.0


class TailModel(_Strict):
    """What the benchmark client sees beyond the engine's steps (read by loratwin.twin.delivery).

    Metrics-scrape blackout: the reference client polls the server's /metrics, then sleeps
    `metrics_poll_interval_s`. While a scrape is served the API server's event loop is blocked
    (prometheus_client renders the page synchronously), so tokens the engine produces meanwhile
    reach the client together when it ends, and requests sent meanwhile reach the server then. A
    scrape lasts metrics_scrape_base_ms + metrics_scrape_ms_per_adapter x served adapters +
    metrics_scrape_ms_per_running x requests running when it starts + metrics_scrape_ms_per_series
    x series of the LoRA-info gauge so far + metrics_scrape_ms_per_listed_name x adapter names
    listed in them (twin.lora_info: vLLM 0.8.5 adds a series for every new pair of running and
    waiting adapter sets and never removes one, so scrapes slow down as a run goes on), of which
    the share metrics_scrape_blocking_share blocks the server (the rest is the page's transfer and
    the client's parsing, which hold nothing back). Scrapes do not all take that long: each one's
    length is that mean times a gamma-distributed factor of mean 1 and coefficient of variation
    metrics_scrape_cv (0: every scrape the mean; fitted, since the data gives each run's mean
    scrape only). All the terms at 0 turn the mechanism off (the default: a profile without
    fitted tail constants sees every token when its step ends).

    First-use stall: the API server gets a tokenizer for each LoRA adapter on the adapter's first
    request (vLLM's TokenizerGroup tries the adapter's folder, then caches the result), which
    blocks it for first_use_stall_ms from that request's arrival (one stall at a time). 0 turns
    it off.
    """

    metrics_poll_interval_s: float = Field(default=2.0, ge=MIN_METRICS_POLL_S, le=MAX_METRICS_POLL_S, allow_inf_nan=False)
    metrics_scrape_base_ms: TermMs = 0.0
    metrics_scrape_ms_per_adapter: TermMs = 0.0
    metrics_scrape_ms_per_running: TermMs = 0.0
    metrics_scrape_ms_per_series: TermMs = 0.0
    metrics_scrape_ms_per_listed_name: TermMs = 0.0
    metrics_scrape_blocking_share: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)
    metrics_scrape_cv: float = Field(default=0.0, ge=0, le=3, allow_inf_nan=False)
    first_use_stall_ms: TermMs = 0.0
    provenance: str = ""

    def switches(self) -> dict[str, tuple[str, ...]]:
        """Each mechanism by name: the fields that, all at 0, turn it off."""
        return {"metrics_scrape": ("metrics_scrape_base_ms", "metrics_scrape_ms_per_adapter",
                                   "metrics_scrape_ms_per_running", "metrics_scrape_ms_per_series",
                                   "metrics_scrape_ms_per_listed_name"),
                "first_use": ("first_use_stall_ms",)}

    @property
    def scrape_on(self) -> bool:
        return any(getattr(self, f) > 0 for f in self.switches()["metrics_scrape"])

    @property
    def gauge_on(self) -> bool:
        """Whether a scrape's length depends on the LoRA-info gauge (twin.lora_info)."""
        return self.scrape_on and (self.metrics_scrape_ms_per_series > 0 or self.metrics_scrape_ms_per_listed_name > 0)

    def scrape_ms(self, served_adapters, running, series=0, listed_names=0):
        """How long one scrape takes, as the client's poll period measures it (ms), with the LoRA-info
        gauge's `series` so far listing `listed_names` adapter names. Scalars or arrays."""
        return (self.metrics_scrape_base_ms + self.metrics_scrape_ms_per_adapter * served_adapters
                + self.metrics_scrape_ms_per_running * running + self.metrics_scrape_ms_per_series * series
                + self.metrics_scrape_ms_per_listed_name * listed_names)


class Profile(_Strict):
    """Cost model of one model on one GPU."""

    name: str
    model: str
    gpu: str
    engine: str = "vLLM 0.8.5, V1 engine, prefix caching off"
    source: str = ""
    fitted: Literal["reference", "calibrated", "custom", "derived"] = "custom"
    # request-length table counted with this model's tokenizer (loratwin.workload.length_tables)
    tokenizer: Annotated[str | None, AfterValidator(_known_tokenizer)] = None
    step_time: StepTimeModel
    scheduler_overhead: SchedulerOverheadModel = SchedulerOverheadModel()
    adapter_load: AdapterLoadModel
    kv: KVCapacityModel
    generation: GenerationModel = GenerationModel()
    placement: PlacementModel = PlacementModel()  # read by loratwin.plan's cost model, not the twin
    tails: TailModel = TailModel()  # what the client sees of the tokens (twin.delivery)


    def server_flags(self) -> MemoryFlags:
        """The `vllm serve` flags this profile holds for (max_num_seqs, the token budget, max_model_len,
        gpu_memory_utilization): its memory model's, else the reference measurements' (MemoryFlags'
        defaults). Commands default to them and print them, so a simulated server is the one that starts."""
        return self.kv.memory.flags if self.kv.memory is not None else MemoryFlags()

    def serve_arguments(self) -> list[str]:
        """The flags of `server_flags` as `vllm serve` arguments: the scheduler's always, the memory ones
        where they differ from vLLM's defaults (utilization 0.9, the model's own max_model_len)."""
        flags = self.server_flags()
        args = ["--max-num-seqs", str(flags.max_num_seqs), "--max-num-batched-tokens", str(flags.max_num_batched_tokens)]
        memory = self.kv.memory
        if flags.gpu_memory_utilization != 0.9:
            args += ["--gpu-memory-utilization", f"{flags.gpu_memory_utilization:g}"]
        if memory is not None and flags.max_model_len not in (None, memory.architecture.max_position_embeddings):
            args += ["--max-model-len", str(flags.max_model_len)]
        return args

    def step_cost(self, max_loras: Values, max_lora_rank: Values) -> StepCost:
        """The step terms with max_loras and max_lora_rank folded in (scalars or arrays)."""
        st, so = self.step_time, self.scheduler_overhead
        return StepCost(
            base_ms=st.base_ms,
            per_seq_ms=st.per_seq_ms,
            per_prefill_token_ms=st.per_prefill_token_ms,
            per_context_token_ms=st.per_context_token_ms,
            lora_base=st.lora_factor_base,
            lora_per_adapter=st.lora_factor_per_adapter,
            sched_intercept_ms=so.intercept_ms,
            sched_per_running_ms=so.per_running_ms,
            sched_per_waiting_ms=so.per_waiting_ms,
            sched_per_waiting_slot_share_ms=so.per_waiting_slot_share_ms,
            lora_step_ms=st.lora_step_ms + st.lora_per_rank_ms * max_lora_rank + st.lora_per_slot_ms * max_loras,
            lora_per_adapter_ms=st.lora_per_adapter_ms,
            lora_per_seq_ms=st.lora_per_seq_per_slot_ms * max_loras,
            lora_per_prefill_token_ms=st.lora_per_prefill_token_per_slot_ms * max_loras,
        )

    def step_ms(
        self,
        running: Values,
        prefill_tokens: Values,
        context_tokens: Values,
        adapters: Values,
        max_loras: Values,
        max_lora_rank: Values,
        *,
        waiting: Values = 0,
        max_cpu_loras: Values | None = None,
        left_out: Values = 0,
    ) -> float | np.ndarray:
        """Duration (ms) of one engine step as the twin's engine prices it, adapter loads aside:
        the compute of `running` sequences scheduled with `prefill_tokens` prompt tokens,
        `context_tokens` tokens already cached and `adapters` distinct adapters (LoRA terms when
        > 0), plus the scheduler's time with `waiting` requests waiting and `left_out` running ones
        the token budget left out of the step (after admission). `max_cpu_loras` defaults to
        `max_loras` (it only matters with requests waiting). Scalars or numpy arrays, broadcast.
        The engine rounds compute and scheduler time to ns apiece and adds the loads."""
        cost = self.step_cost(max_loras, max_lora_rank)
        cpu_slots = max_loras if max_cpu_loras is None else max_cpu_loras
        return cost.compute_ms(running, prefill_tokens, context_tokens, adapters) + cost.scheduler_ms(
            running + left_out, waiting, max_loras, cpu_slots
        )

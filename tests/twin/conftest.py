"""Helpers for hand-made twin cases: a tiny custom profile and literal request lists.

With `make_profile()` every engine step lasts exactly 1 ms (base_ms=1, no per-token cost, LoRA
factor 1, no scheduler overhead); adapter loads add their chosen ms to the step that brings the
adapter in. KV capacity is given in tokens; the engine keeps one block aside (vLLM's null block),
so usable blocks = round(kv_tokens / 16) - 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pytest

from loratwin.profiles import Profile
from loratwin.profiles.model import AdapterLoadModel, KVCapacityModel, SchedulerOverheadModel, StepTimeModel
from loratwin.twin import ServerConfig, simulate
from loratwin.twin.result import RunResult
from loratwin.workload import AdapterSpec, RequestTable, WorkloadSpec

BLOCK = 16
RANKS = (8, 16)


def kv_tokens_for_blocks(usable_blocks: int) -> int:
    """KV capacity (tokens) that leaves exactly `usable_blocks` blocks to requests."""
    return (usable_blocks + 1) * BLOCK


def make_profile(
    kv_tokens: int = 64 * 1024,
    *,
    kv_table: Mapping[int, Mapping[int, int | None]] | None = None,
    max_loras_up_to: int = 8,
    gpu_load_ms: float | Mapping[int, float] = 0.0,
    disk_load_ms: float | Mapping[int, float] = 0.0,
    base_ms: float = 1.0,
    per_seq_ms: float = 0.0,
    ranks: Sequence[int] = RANKS,
) -> Profile:
    """A custom profile in which a step lasts `base_ms` (+ per_seq_ms per sequence) + load costs.

    `kv_table` ({max_lora_rank: {max_loras: tokens or None}}) overrides the flat `kv_tokens` table
    (same capacity for every max_lora_rank in `ranks` and max_loras 1..max_loras_up_to).
    Load costs are per adapter rank (a float: the same for every rank), independent of max_lora_rank.
    """

    def per_rank(value: float | Mapping[int, float], rank: int) -> float:
        return float(value[rank]) if isinstance(value, Mapping) else float(value)

    if kv_table is None:
        kv_table = {r: {m: kv_tokens for m in range(1, max_loras_up_to + 1)} for r in ranks}
    return Profile(
        name="test-tiny",
        model="test/model",
        gpu="test-gpu",
        fitted="custom",
        step_time=StepTimeModel(
            base_ms=base_ms,
            per_seq_ms=per_seq_ms,
            per_prefill_token_ms=0.0,
            per_context_token_ms=0.0,
            lora_factor_base=1.0,
            lora_factor_per_adapter=0.0,
        ),
        scheduler_overhead=SchedulerOverheadModel(),
        adapter_load=AdapterLoadModel(
            cpu_to_gpu_ms={mr: {r: per_rank(gpu_load_ms, r) for r in ranks if r <= mr} for mr in ranks},
            disk_to_cpu_ms={mr: {r: per_rank(disk_load_ms, r) for r in ranks if r <= mr} for mr in ranks},
        ),
        kv=KVCapacityModel(block_size=BLOCK, capacity_tokens={k: dict(v) for k, v in kv_table.items()}),
    )


Req = tuple[float, int, int, int]  # (arrival_s, adapter_index, prompt_tokens, output_tokens)


def make_workload(
    reqs: Iterable[Req], ranks: Sequence[int] | None = None, n_adapters: int | None = None
) -> tuple[WorkloadSpec, RequestTable]:
    """A WorkloadSpec (adapters "a0", "a1", ...) and the RequestTable of a literal request list."""
    reqs = list(reqs)
    if ranks is None:
        n = n_adapters if n_adapters is not None else max((r[1] for r in reqs), default=0) + 1
        ranks = (8,) * n
    workload = WorkloadSpec(adapters=tuple(AdapterSpec(id=f"a{i}", rank=int(r)) for i, r in enumerate(ranks)))
    table = RequestTable(
        arrival_s=np.array([r[0] for r in reqs], np.float64),
        adapter=np.array([r[1] for r in reqs], np.int32),
        prompt_tokens=np.array([r[2] for r in reqs], np.int32),
        output_tokens=np.array([r[3] for r in reqs], np.int32),
    )
    return workload, table


def run_case(
    reqs: Iterable[Req],
    *,
    profile: Profile | None = None,
    ranks: Sequence[int] | None = None,
    n_adapters: int | None = None,
    duration_s: float = 10.0,
    **server: object,
) -> RunResult:
    """Simulate a literal request list; `server` holds ServerConfig flags (max_loras defaults to
    the number of adapters)."""
    workload, table = make_workload(reqs, ranks, n_adapters)
    server.setdefault("max_loras", len(workload.adapters))
    return simulate(
        workload,
        ServerConfig(**server),
        profile if profile is not None else make_profile(),
        duration_s=duration_s,
        requests=table,
    )


def ms(seconds: object) -> object:
    """Seconds (scalar or array) as ms, rounded to the ns so exact comparisons are safe."""
    return np.round(np.asarray(seconds, np.float64) * 1e3, 6)


@pytest.fixture(scope="session")
def warm_engine() -> None:
    """Load (or compile) the numba engine once, before timing-sensitive tests run."""
    run_case([(0.0, 0, 4, 2)], duration_s=0.1)

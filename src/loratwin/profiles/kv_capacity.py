"""A profile's KV cache capacity: measured per (max_lora_rank, max_loras), and vLLM's memory model
(loratwin.profiles.derive.memory) for the configurations the measurements do not cover.

`tokens(max_loras, max_lora_rank)`:
- a measured max_lora_rank, max_loras within its measured range: the measured table (linear between
  measured points; next to a point that did not start, it does not start);
- elsewhere, with a `memory` section: the memory model, kept on the right side of the measurements
  (fewer slots or a smaller rank never hold less KV): at a measured rank, at least the size measured
  at its fewest slots (below them) and at most the size at its most slots (above them); at an
  unmeasured rank, at most the profile's size at the largest measured rank below it (it does not
  start where that does not), else at least the size at the smallest measured rank above it;
- elsewhere, without one: below the smallest measured max_loras, that point (a safe, slightly low
  estimate); otherwise an error naming what was measured.
"""

from __future__ import annotations

import bisect
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles.derive.catalog import ModelArchitecture
from loratwin.profiles.derive.memory import (
    MemoryBreakdown,
    MemoryFlags,
    slots_that_fit,
    vllm_memory,
)
from loratwin.profiles.lora_rank import VLLM_MAX_LORA_RANKS

# KV capacity per server, in tokens: today's largest GPUs hold a few million; a billion is a
# mistake (and keeps block counts far inside the engine's integers).
MAX_KV_TOKENS = 1_000_000_000
# vLLM's KV block sizes are 8 to 128 tokens.
MAX_BLOCK_SIZE = 1024
# The fewest KV blocks a server runs with: vLLM's null block and one for a request.
MIN_KV_BLOCKS = 2

Rank = Annotated[int, Field(gt=0)]
Slots = Annotated[int, Field(gt=0)]
KVTokens = Annotated[int, Field(gt=0, le=MAX_KV_TOKENS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KVMemoryModel(_Strict):
    """The memory model's inputs: the model's architecture, the GPU's total memory as CUDA reports
    it, the server flags other than max_loras and max_lora_rank, and the fitted non-torch bytes."""

    architecture: ModelArchitecture
    gpu_total_bytes: Annotated[int, Field(gt=0, le=10**15)]
    flags: MemoryFlags = MemoryFlags()
    non_torch_bytes: Annotated[int, Field(ge=0, le=10**13)]
    provenance: str = ""

    def breakdown(self, max_loras: int, max_lora_rank: int) -> MemoryBreakdown:
        return vllm_memory(self.architecture, self.gpu_total_bytes, self.flags, max_loras, max_lora_rank,
                           non_torch_bytes=self.non_torch_bytes)

    def slots_that_fit(self, max_lora_rank: int) -> int:
        return slots_that_fit(self.architecture, self.gpu_total_bytes, self.flags, max_lora_rank)


class KVCapacityModel(_Strict):
    """KV cache size in tokens per (max_lora_rank, max_loras) (see the module doc).

    A `null` measured capacity means the server did not start there (out of memory).
    """

    block_size: int = Field(default=16, gt=0, le=MAX_BLOCK_SIZE)
    measured_max_num_seqs: int = Field(default=2048, gt=0)
    # per max_lora_rank, at least one measured max_loras: interpolation needs a point
    capacity_tokens: Annotated[
        dict[Rank, Annotated[dict[Slots, KVTokens | None], Field(min_length=1)]], Field(min_length=1)
    ] | None = None
    infeasible_reason: dict[int, dict[int, str]] = Field(default_factory=dict)
    memory: KVMemoryModel | None = None
    _max_slots: dict[int, int] = PrivateAttr(default_factory=dict)  # max_slots per rank, once found

    @field_validator("capacity_tokens")
    @classmethod
    def _at_least_two_blocks(cls, capacity: dict[int, dict[int, int | None]] | None, info: ValidationInfo):
        """A server holds at least two KV blocks: vLLM keeps one aside (its null block), and a request
        needs one more. Interpolated capacities lie between measured ones, so they hold two too."""
        block_size = info.data.get("block_size")
        if block_size is None or capacity is None:  # refused on its own, or no table
            return capacity
        for rank, by_loras in capacity.items():
            for loras, tokens in by_loras.items():
                if tokens is not None and tokens < MIN_KV_BLOCKS * block_size:
                    raise ValueError(
                        f"at max_lora_rank {rank}, max_loras {loras}: {tokens} token{'' if tokens == 1 else 's'}, fewer "
                        f"than {MIN_KV_BLOCKS} KV blocks of kv.block_size {block_size} tokens ({MIN_KV_BLOCKS * block_size} "
                        "tokens: vLLM keeps one block aside and a request needs another)"
                    )
        return capacity

    @model_validator(mode="after")
    def _has_a_source(self) -> KVCapacityModel:
        if self.capacity_tokens is None and self.memory is None:
            raise ValueError("needs capacity_tokens (measured KV sizes) or memory (the memory model's inputs)")
        if self.memory is not None and self.memory.flags.block_size != self.block_size:
            raise ValueError(f"memory.flags.block_size ({self.memory.flags.block_size}) must equal "
                             f"block_size ({self.block_size})")
        return self

    def ranks(self) -> list[int]:
        """The max_lora_rank values it can price."""
        measured = set(self.capacity_tokens or {})
        return sorted(measured | set(VLLM_MAX_LORA_RANKS)) if self.memory is not None else sorted(measured)

    def max_slots(self, max_lora_rank: int) -> int:
        """The largest max_loras worth trying at this rank: the largest measured one without a memory
        model, else the largest that starts (0 if none does)."""
        if self.memory is None:
            table = self._table_for(max_lora_rank)
            return max(table)
        if max_lora_rank not in self._max_slots:
            lo, hi = 0, self.memory.slots_that_fit(max_lora_rank) + 1  # starts at lo (or lo = 0), not at hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if self._starts(mid, max_lora_rank) else (lo, mid)
            self._max_slots[max_lora_rank] = lo
        return self._max_slots[max_lora_rank]

    def _starts(self, max_loras: int, max_lora_rank: int) -> bool:
        try:
            self.tokens(max_loras, max_lora_rank)
        except InfeasibleConfigError:
            return False
        return True

    def tokens(self, max_loras: int, max_lora_rank: int) -> int:
        by_loras = (self.capacity_tokens or {}).get(max_lora_rank)
        if by_loras is not None and min(by_loras) <= max_loras <= max(by_loras):
            return self._measured(max_loras, max_lora_rank)
        if self.memory is None:
            table = self._table_for(max_lora_rank)
            if max_loras > max(table):
                raise InputError(
                    f"--max-loras {max_loras}: the profile's KV capacity is measured up to "
                    f"max_loras {max(table)} at max_lora_rank {max_lora_rank}"
                )
            return self._measured(min(table), max_lora_rank)
        return self._modelled(max_loras, max_lora_rank)

    def breakdown(self, max_loras: int, max_lora_rank: int) -> MemoryBreakdown | None:
        """The memory model's breakdown at this configuration; None without a memory section."""
        return None if self.memory is None else self.memory.breakdown(max_loras, max_lora_rank)

    def _table_for(self, max_lora_rank: int) -> dict[int, int | None]:
        table = (self.capacity_tokens or {}).get(max_lora_rank)
        if table is None:
            raise InputError(
                f"--max-lora-rank {max_lora_rank}: the profile's KV capacity is known for "
                f"max_lora_rank {sorted(self.capacity_tokens or {})} only"
            )
        return table

    def _measured(self, max_loras: int, max_lora_rank: int) -> int:
        by_loras = self._table_for(max_lora_rank)
        points = sorted(by_loras)
        i = bisect.bisect_left(points, max_loras)
        hi = points[i]
        if hi == max_loras:
            value = by_loras[hi]
            if value is None:
                raise self._infeasible(max_loras, max_lora_rank, self._reason(max_lora_rank, hi))
            return int(value)
        lo = points[i - 1]
        v_lo, v_hi = by_loras[lo], by_loras[hi]
        if v_lo is None or v_hi is None:
            raise self._infeasible(max_loras, max_lora_rank, self._reason(max_lora_rank, lo if v_lo is None else hi))
        frac = (max_loras - lo) / (hi - lo)
        return int(round(v_lo + frac * (v_hi - v_lo)))

    def _modelled(self, max_loras: int, max_lora_rank: int) -> int:
        assert self.memory is not None
        here = self.memory.breakdown(max_loras, max_lora_rank)
        if not here.starts:
            raise self._infeasible(max_loras, max_lora_rank, here.reason)
        if here.kv_blocks < MIN_KV_BLOCKS:
            raise self._infeasible(max_loras, max_lora_rank, f"fewer than {MIN_KV_BLOCKS} KV blocks (vLLM keeps "
                                   "one aside and a request needs another)")
        table = self.capacity_tokens or {}
        points = sorted(table.get(max_lora_rank, {}))
        if points and max_loras < points[0]:
            return max(here.kv_tokens, self._measured(points[0], max_lora_rank))
        below = [r for r in table if r < max_lora_rank]
        # more slots, or a larger rank, than a configuration whose size the profile knows
        slots, rank = (points[-1], max_lora_rank) if points else (max_loras, max(below) if below else None)
        if rank is not None:
            try:
                return min(here.kv_tokens, self.tokens(slots, rank))
            except InfeasibleConfigError:
                raise self._infeasible(max_loras, max_lora_rank, f"it does not start at max_loras {slots}, "
                                       f"max_lora_rank {rank}, which needs less memory") from None
        above = min(table) if table else None  # a smaller rank than any measured: at least that one's
        if above is not None:
            try:
                return max(here.kv_tokens, self.tokens(max_loras, above))
            except InfeasibleConfigError:
                pass
        return here.kv_tokens

    def _reason(self, max_lora_rank: int, at: int) -> str:
        return self.infeasible_reason.get(max_lora_rank, {}).get(at, "out of GPU memory at start")

    @staticmethod
    def _infeasible(max_loras: int, max_lora_rank: int, reason: str) -> InfeasibleConfigError:
        return InfeasibleConfigError(
            f"vLLM does not start with --max-loras {max_loras} --max-lora-rank {max_lora_rank} "
            f"on this profile: {reason} (LoRA buffers for {max_loras} x rank {max_lora_rank} "
            "leave too little memory for the KV cache)"
        )

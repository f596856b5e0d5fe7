"""What a change of placement costs: the adapters that change GPU, each with the load it takes on
its new GPU, and the GPU matching that lets a fresh placement be compared with a running one.

A placement's GPUs are named by their index; an adapter on GPU 3 before and after has not moved.
An adapter served from several GPUs (replicas) counts one move per GPU it is added to or dropped
from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from loratwin.plan.placement.result import GpuPlan, Placement
from loratwin.profiles import Profile


@dataclass(frozen=True)
class Move:
    """One adapter loaded on a GPU it was not on (`from_gpu` None: a new adapter) or dropped from
    one it stays off (`to_gpu` None: a replica dropped; no load)."""

    adapter: str
    rank: int
    from_gpu: int | None
    to_gpu: int | None
    load_ms: float  # disk -> CPU -> GPU on the new GPU (the profile's load model); 0 when dropped

    def to_dict(self) -> dict:
        return {"adapter": self.adapter, "from_gpu": self.from_gpu, "to_gpu": self.to_gpu, "rank": self.rank,
                "load_ms": self.load_ms}


def load_ms(profile: Profile, max_lora_rank: int, rank: int) -> float:
    """The time to bring an adapter of `rank` onto a server with `max_lora_rank` that has never
    seen it: from disk to CPU memory, then into a GPU slot (the profile's adapter-load tables)."""
    loads = profile.adapter_load
    return loads.disk_to_cpu(max_lora_rank, rank) + loads.cpu_to_gpu(max_lora_rank, rank)


def gpus_of(placement: Placement | Running) -> dict[str, set[int]]:
    """Adapter id -> the GPUs serving it (one unless it is replicated)."""
    return {a: set(gpus) for a, gpus in placement.routing.items()}


def moves_between(old: Mapping[str, set[int]], new: Placement, profile: Profile) -> tuple[list[Move], list[Move]]:
    """(moves, added): every adapter of `new` that was in `old` and is now on a GPU it was not on
    (paired with a GPU it left, where there is one), or off a GPU it was on; and the adapters new to
    the placement. Adapters of `old` missing from `new` vanished: neither."""
    plans = {g.index: g for g in new.gpus}
    moves: list[Move] = []
    added: list[Move] = []
    for adapter_id, now in sorted(gpus_of(new).items()):
        rank = next(a.rank for a in plans[min(now)].adapters if a.id == adapter_id)
        before = old.get(adapter_id)
        onto = sorted(now - before) if before is not None else sorted(now)
        if before is None:
            added += [Move(adapter_id, rank, None, g, load_ms(profile, plans[g].max_lora_rank, rank)) for g in onto]
            continue
        left = sorted(before - now)
        for k, g in enumerate(onto):
            moves.append(Move(adapter_id, rank, left[k] if k < len(left) else None, g,
                              load_ms(profile, plans[g].max_lora_rank, rank)))
        moves += [Move(adapter_id, rank, g, None, 0.0) for g in left[len(onto):]]
    return moves, added


def match_gpus(old: Mapping[str, set[int]], fresh: Placement, first_new_index: int) -> dict[int, int]:
    """New names for `fresh`'s GPUs: each after the old GPU it shares the most adapters with (an
    assignment maximising the adapters that stay put: scipy's linear_sum_assignment), the others
    new indices from `first_new_index`. Returns fresh GPU index -> new index."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    old_indices = sorted({g for gpus in old.values() for g in gpus})
    column = {g: j for j, g in enumerate(old_indices)}
    shared = np.zeros((len(fresh.gpus), len(old_indices)))
    for i, plan in enumerate(fresh.gpus):
        for a in plan.adapters:
            for g in old.get(a.id, ()):
                shared[i, column[g]] += 1
    rows, cols = linear_sum_assignment(shared, maximize=True)
    named = {int(r): old_indices[int(c)] for r, c in zip(rows, cols) if shared[r, c] > 0}
    renamed, next_index = {}, first_new_index
    for i, plan in enumerate(fresh.gpus):
        if i not in named:
            named[i], next_index = next_index, next_index + 1
        renamed[plan.index] = named[i]
    return renamed


def renamed(placement: Placement, names: Mapping[int, int]) -> tuple[list[GpuPlan], dict[str, dict[int, float]]]:
    """`placement`'s GPUs and routing with GPU indices renamed by `names`, GPUs in index order."""
    gpus = sorted((dataclasses.replace(g, index=names[g.index]) for g in placement.gpus), key=lambda g: g.index)
    routing = {a: dict(sorted((names[g], w) for g, w in route.items())) for a, route in placement.routing.items()}
    return gpus, routing


def restarted(old: Placement | Running, new: Placement) -> list[int]:
    """GPUs present before and after whose --max-loras or --max-lora-rank changed: vLLM reads both at
    start, so those servers restart. Adapters come and go on a running server without one (vLLM's
    runtime /v1/load_lora_adapter and /v1/unload_lora_adapter)."""
    before = {g.index: (g.max_loras, g.max_lora_rank) for g in old.gpus}
    return [g.index for g in new.gpus if g.index in before and before[g.index] != (g.max_loras, g.max_lora_rank)]


@dataclass(frozen=True)
class RunningGpu:
    index: int
    max_loras: int
    max_lora_rank: int


@dataclass(frozen=True)
class Running:
    """What re-placement needs of a placement that runs: its profile, each GPU's flags, and the
    routing table (adapter id -> {GPU index: weight})."""

    profile: str
    gpus: tuple[RunningGpu, ...]
    routing: dict[str, dict[int, float]]

    @classmethod
    def of(cls, placement: Placement) -> Running:
        return cls(placement.profile, tuple(RunningGpu(g.index, g.max_loras, g.max_lora_rank) for g in placement.gpus),
                   {a: dict(route) for a, route in placement.routing.items()})

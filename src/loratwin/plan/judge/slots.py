"""Which server configurations a GPU's share can run with: the `max_lora_rank` its adapters need
and the `max_loras` values that start (fit in memory) at that rank."""

from __future__ import annotations

from collections.abc import Sequence

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import Profile, load_profile
from loratwin.workload import AdapterSpec

# max_loras values a check tries (plus the served count itself): dense where the choice matters.
SLOT_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384)


def resolve_profile(profile: Profile | str) -> Profile:
    return load_profile(profile) if isinstance(profile, str) else profile


def supported_ranks(profile: Profile) -> list[int]:
    """max_lora_rank values the profile can price (KV capacity and adapter loads both measured)."""
    return sorted(set(profile.kv.capacity_tokens) & set(profile.adapter_load.cpu_to_gpu_ms))


def server_rank(profile: Profile, adapter_ranks: Sequence[int]) -> int | None:
    """The smallest max_lora_rank the profile knows that admits every rank given; None if none does."""
    need = max(adapter_ranks)
    fitting = [r for r in supported_ranks(profile) if r >= need]
    return fitting[0] if fitting else None


def slot_candidates(profile: Profile, max_lora_rank: int, served: int, grid: Sequence[int]) -> list[int]:
    """Candidate max_loras values below the served count, the served count itself, up to what the
    profile measured; a server never needs more slots than adapters."""
    measured = max(profile.kv.capacity_tokens[max_lora_rank])
    values = sorted({s for s in grid if s < served} | {served})
    return [s for s in values if s <= measured]


def kv_tokens_or_none(profile: Profile, max_loras: int, max_lora_rank: int) -> int | None:
    try:
        return profile.kv.tokens(max_loras, max_lora_rank)
    except (InfeasibleConfigError, InputError):
        return None


def _no_rank_reason(profile: Profile, ranks: Sequence[int]) -> str:
    return (
        f"rank {max(ranks)} is above every max_lora_rank the profile "
        f"{profile.name} knows ({', '.join(map(str, supported_ranks(profile)))})"
    )


def adapter_server_rank(profile: Profile, adapter: AdapterSpec) -> int:
    """The least max_lora_rank that serves this adapter; an InputError naming it when none does."""
    rank = server_rank(profile, [adapter.rank])
    if rank is None:
        raise InputError(f"adapter {adapter.id!r}: {_no_rank_reason(profile, [adapter.rank])}")
    return rank


def startable_slots(profile: Profile, ranks: Sequence[int], served: int,
                    grid: Sequence[int]) -> tuple[int | None, list[tuple[int, int]], str]:
    """What every estimator starts from: the server's max_lora_rank for these adapter ranks, the
    candidate max_loras that start with it and their KV tokens, and why none does ("" when some do)."""
    max_rank = server_rank(profile, ranks)
    if max_rank is None:
        return None, [], _no_rank_reason(profile, ranks)
    slots = [(s, tokens) for s in slot_candidates(profile, max_rank, served, grid)
             if (tokens := kv_tokens_or_none(profile, s, max_rank)) is not None]
    return max_rank, slots, "" if slots else f"no max_loras value starts with max_lora_rank {max_rank}"

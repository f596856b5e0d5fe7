"""Which server configurations a GPU's share can run with: the `max_lora_rank` its adapters need
and the `max_loras` values that start (fit in memory) at that rank."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import Profile, load_profile
from loratwin.profiles.lora_rank import VLLM_MAX_LORA_RANKS, server_max_lora_rank
from loratwin.workload import AdapterSpec

# max_loras values a check tries (plus the served count itself): dense where the choice matters.
SLOT_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384)


def checked_slot_grid(grid: object, name: str = "slot_grid") -> tuple[int, ...]:
    """A grid of max_loras values as given (`make_check(..., slot_grid=...)`): a non-empty list of
    whole numbers of slots, each at least 1; anything else is refused, naming the value."""
    values = () if isinstance(grid, (str, bytes, Mapping)) or not isinstance(grid, Iterable) else tuple(grid)
    if not values:
        raise InputError(f"{name}: expected a non-empty list of max_loras values (whole numbers >= 1), got {grid!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise InputError(f"{name}: every max_loras value must be a whole number >= 1, got {value!r}")
    return tuple(int(v) for v in values)


def resolve_profile(profile: Profile | str) -> Profile:
    return load_profile(profile) if isinstance(profile, str) else profile


def supported_ranks(profile: Profile) -> list[int]:
    """max_lora_rank values (of those vLLM accepts) the profile can price: every one with a memory
    model, else those its KV capacity was measured at."""
    return [r for r in profile.kv.ranks() if r in VLLM_MAX_LORA_RANKS]


def server_rank(profile: Profile, adapter_ranks: Sequence[int]) -> int | None:
    """The server's max_lora_rank for these adapters: the smallest vLLM accepts that serves the
    largest (loratwin.profiles.lora_rank), or the next the profile can price; None if none can."""
    need = max(adapter_ranks)
    if need > VLLM_MAX_LORA_RANKS[-1]:
        return None
    least = server_max_lora_rank(need)
    fitting = [r for r in supported_ranks(profile) if r >= least]
    return fitting[0] if fitting else None


def class_ranks(profile: Profile, need_ranks: Sequence[float]) -> list[int]:
    """The max_lora_rank values a GPU class may take for adapters that need `need_ranks` (each the
    server rank it needs): the ranks the profile measured that some need fits under, and the needed
    ranks themselves (an unmeasured rank above every need only costs more: less KV, more LoRA work)."""
    needs = {int(n) for n in need_ranks}
    measured = set(profile.kv.capacity_tokens or {}) & set(supported_ranks(profile))
    return sorted({r for r in measured if any(n <= r for n in needs)} | (needs & set(supported_ranks(profile))))


def slot_candidates(profile: Profile, max_lora_rank: int, served: int, grid: Sequence[int]) -> list[int]:
    """Candidate max_loras values below the served count, the served count itself, up to what the
    profile can price (`KVCapacityModel.max_slots`); a server never needs more slots than adapters."""
    most = profile.kv.max_slots(max_lora_rank)
    values = sorted({s for s in grid if s < served} | {served})
    return [s for s in values if s <= most]


def kv_tokens_or_none(profile: Profile, max_loras: int, max_lora_rank: int) -> int | None:
    try:
        return profile.kv.tokens(max_loras, max_lora_rank)
    except (InfeasibleConfigError, InputError):
        return None


def _no_rank_reason(profile: Profile, ranks: Sequence[int]) -> str:
    if max(ranks) > VLLM_MAX_LORA_RANKS[-1]:
        return f"rank {max(ranks)} is above {VLLM_MAX_LORA_RANKS[-1]}, the largest --max-lora-rank vLLM accepts"
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

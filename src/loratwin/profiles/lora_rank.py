"""The `--max-lora-rank` values vLLM accepts, and the server rank a set of adapters needs.

vLLM 0.8.5 (`LoRAConfig.__post_init__`) refuses any other value; an adapter of a smaller rank is
served by a larger max_lora_rank (its weights are zero-padded into the rank-sized GPU slots).
"""

from __future__ import annotations

from loratwin.errors import InputError

VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def check_max_lora_rank(value: int, flag: str = "--max-lora-rank") -> int:
    """`value` when vLLM accepts it; otherwise one InputError naming `flag` and the accepted values."""
    if value not in VLLM_MAX_LORA_RANKS:
        raise InputError(
            f"{flag} {value}: vLLM accepts only {', '.join(map(str, VLLM_MAX_LORA_RANKS))}"
        )
    return value


def server_max_lora_rank(largest_adapter_rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that serves an adapter of this rank (4 -> 8, 12 -> 16)."""
    for rank in VLLM_MAX_LORA_RANKS:
        if rank >= largest_adapter_rank:
            return rank
    raise InputError(
        f"adapter rank {largest_adapter_rank} is above {VLLM_MAX_LORA_RANKS[-1]}, the largest "
        "--max-lora-rank vLLM accepts"
    )

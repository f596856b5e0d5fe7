"""Server configuration of one vLLM replica, with vLLM's flag names and defaults, and resolved
against a workload and a profile."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from loratwin.errors import InputError
from loratwin.profiles import Profile
from loratwin.profiles.lora_rank import check_max_lora_rank, server_max_lora_rank
from loratwin.workload import WorkloadSpec

# The reference measurements ran with --max-num-seqs 2048 (vLLM's own default is lower); loratwin
# defaults to it so that its results compare with those measurements.
DEFAULT_MAX_NUM_SEQS = 2048
# vLLM 0.8.5's API-server default token budget with chunked prefill.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
# The reference runs' benchmark client saturated near this many waiting requests.
REFERENCE_CLIENT_MAX_WAITING = 25_500


# the largest count the compiled engine takes (a signed 64-bit integer)
ENGINE_INT_MAX = 2**63 - 1


class ServerConfig(BaseModel):
    """Flags of `vllm serve` that shape multi-LoRA scheduling.

    `max_cpu_loras` defaults to the number of served adapters, as in the reference measurements,
    and `max_lora_rank` to the smallest value vLLM accepts that serves the largest adapter rank.
    `client_max_waiting` is not a vLLM flag: it caps the waiting queue the way the reference runs'
    benchmark client did (arrivals beyond it are held by the client until the queue shrinks); None
    means no cap.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # every count is at most ENGINE_INT_MAX: the compiled engine holds them in signed 64-bit integers
    max_loras: int = Field(ge=1, le=ENGINE_INT_MAX)
    max_cpu_loras: int | None = Field(default=None, ge=1, le=ENGINE_INT_MAX)
    max_lora_rank: int | None = Field(default=None, ge=1, le=ENGINE_INT_MAX)
    # None: the profile's (Profile.server_flags: a derived profile's own, else the reference runs')
    max_num_seqs: int | None = Field(default=None, ge=1, le=ENGINE_INT_MAX)
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=ENGINE_INT_MAX)
    client_max_waiting: int | None = Field(default=None, ge=1, le=ENGINE_INT_MAX)


@dataclass(frozen=True)
class ResolvedServer:
    """A ServerConfig with every default filled in, checked against the workload and profile."""

    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    max_num_seqs: int
    max_num_batched_tokens: int
    client_max_waiting: int | None
    kv_cache_tokens: int
    num_blocks: int
    block_size: int


def default_max_lora_rank(workload: WorkloadSpec, profile: Profile, ranks_from: str = "the workload") -> int:
    """max_lora_rank when --max-lora-rank is not given: the smallest value vLLM accepts that serves the
    largest adapter rank (rank 4 -> 8, 12 -> 16), refused in terms of where the ranks come from
    (`ranks_from`: "--ranks", a file) when vLLM or the profile cannot take it."""
    rank = workload.max_rank
    try:
        server_rank = server_max_lora_rank(rank)
    except InputError as err:
        raise InputError(f"{ranks_from}: {err}") from None
    known = profile.kv.ranks()
    if server_rank not in known:
        raise InputError(
            f"{ranks_from}: the largest adapter rank, {rank}, needs max_lora_rank {server_rank}, and profile "
            f"{profile.name}'s KV capacity is known for max_lora_rank {', '.join(map(str, known))} only"
        )
    return server_rank


def resolve_server(server: ServerConfig, workload: WorkloadSpec, profile: Profile,
                   ranks_from: str = "the workload") -> ResolvedServer:
    """Fill in vLLM's defaults and refuse what vLLM would refuse, naming the flag the user gave (or,
    for a default, what it comes from: `ranks_from` says where the adapters' ranks come from)."""
    served = len(workload.adapters)
    if server.max_lora_rank is not None:
        check_max_lora_rank(server.max_lora_rank)
    max_lora_rank = (server.max_lora_rank if server.max_lora_rank is not None
                     else default_max_lora_rank(workload, profile, ranks_from))
    if server.max_cpu_loras is None and served < server.max_loras:
        raise InputError(
            f"--max-loras {server.max_loras}: more GPU slots than the {served} adapter{'' if served == 1 else 's'} "
            f"served; the CPU cache (--max-cpu-loras, by default the served count, {served}) must hold at least "
            f"--max-loras adapters, as vLLM requires: lower --max-loras to {served} or give --max-cpu-loras"
        )
    max_cpu_loras = server.max_cpu_loras if server.max_cpu_loras is not None else served
    if max_cpu_loras < server.max_loras:
        raise InputError(
            f"--max-cpu-loras ({max_cpu_loras}) must be >= --max-loras ({server.max_loras}), as vLLM requires"
        )
    flags = profile.server_flags()
    max_num_seqs = flags.max_num_seqs if server.max_num_seqs is None else server.max_num_seqs
    max_num_batched_tokens = (flags.max_num_batched_tokens if server.max_num_batched_tokens is None
                              else server.max_num_batched_tokens)
    if max_num_batched_tokens < max_num_seqs:
        raise InputError(
            f"--max-num-batched-tokens ({max_num_batched_tokens}) must be >= --max-num-seqs "
            f"({max_num_seqs}), as vLLM requires"
        )
    for a in workload.adapters:
        if a.rank > max_lora_rank:
            raise InputError(f"adapter {a.id!r} has rank {a.rank}, above --max-lora-rank {max_lora_rank}")
    kv_tokens = profile.kv.tokens(server.max_loras, max_lora_rank)
    block_size = profile.kv.block_size
    return ResolvedServer(
        max_loras=server.max_loras,
        max_cpu_loras=max_cpu_loras,
        max_lora_rank=max_lora_rank,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        client_max_waiting=server.client_max_waiting,
        kv_cache_tokens=kv_tokens,
        num_blocks=int(round(kv_tokens / block_size)),
        block_size=block_size,
    )

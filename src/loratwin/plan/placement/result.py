"""What a placement is: GPUs, each with its adapters, its vLLM flags and the judged prediction."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loratwin.errors import InputError
from loratwin.twin.config import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS
from loratwin.workload import AdapterSpec, LengthSpec, PoissonArrival, ShareGPTLengths

# the reference runs' scheduler flags, for a command built without a profile
DEFAULT_SERVE = ("--max-num-seqs", str(DEFAULT_MAX_NUM_SEQS), "--max-num-batched-tokens", str(DEFAULT_MAX_NUM_BATCHED_TOKENS))

# where the adapters lie when the user does not say (recommend and place --adapter-dir): a placeholder
DEFAULT_ADAPTER_DIR = "./adapters"


def check_adapter_dir(adapter_dir: str) -> None:
    """The folder the adapters lie in (--adapter-dir) is named: an empty one would put each at /ID."""
    if not str(adapter_dir).strip():
        raise InputError(f"--adapter-dir: name the folder the adapters lie in, e.g. ./adapters or /srv/lora, "
                         f"got {adapter_dir!r}")


def vllm_command(model_id: str, adapter_ids: list[str], max_loras: int, max_lora_rank: int,
                 adapter_dir: str = DEFAULT_ADAPTER_DIR, serve_arguments: Sequence[str] = DEFAULT_SERVE) -> list[str]:
    """`vllm serve` with these flags and adapters (each at `adapter_dir`/its id), as a list of arguments;
    the profile's server flags (`Profile.serve_arguments`: max_num_seqs and the token budget as the
    prediction assumed, and what sized its memory). --max-cpu-loras: all the adapters."""
    check_adapter_dir(adapter_dir)
    command = [
        "vllm", "serve", model_id, "--enable-lora",
        "--max-loras", str(max_loras), "--max-cpu-loras", str(len(adapter_ids)), "--max-lora-rank", str(max_lora_rank),
        *serve_arguments, "--no-enable-prefix-caching", "--lora-modules",
    ]
    return command + [f"{a}={adapter_dir.rstrip('/')}/{a}" for a in adapter_ids]


@dataclass(frozen=True)
class GpuPlan:
    """One GPU of a placement: its adapters and its vLLM configuration, with the estimator's
    prediction and the rule's judgement there."""

    index: int
    adapters: tuple[AdapterSpec, ...]
    max_loras: int
    max_lora_rank: int
    predicted_tok_s: float
    offered_tok_s: float
    accepted: bool  # by the acceptance rule, on the estimator's prediction
    pressure: float  # the largest value-over-limit ratio of the prediction (<= 1: accepted)
    deciding: str  # that limit with its value, e.g. "mean wait for a batch slot 55.0 s of 60.0 s allowed"
    tightest: str = ""  # that limit's short name
    wait_s: float = 0.0  # predicted mean wait for a place in the batch
    queue_s: float = 0.0  # predicted mean wait of every request for KV admission
    slos: list[dict[str, Any]] | None = None  # each SLO of the rule at this GPU's prediction (ms)

    @property
    def max_cpu_loras(self) -> int:
        return len(self.adapters)

    @property
    def lora_flags(self) -> str:
        """Its adapter flags for `vllm serve`."""
        return f"--max-loras {self.max_loras} --max-cpu-loras {self.max_cpu_loras} --max-lora-rank {self.max_lora_rank}"

    @property
    def rate_req_s(self) -> float:
        return math.fsum(a.rate_req_s for a in self.adapters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.index,
            "adapters": [a.id for a in self.adapters],
            "served": len(self.adapters),
            "max_loras": self.max_loras,
            "max_cpu_loras": self.max_cpu_loras,
            "max_lora_rank": self.max_lora_rank,
            "rate_req_s": self.rate_req_s,
            # each adapter's rate on this GPU (a replicated adapter's share of its requests)
            "adapter_rates_req_s": [a.rate_req_s for a in self.adapters],
            "offered_tok_s": self.offered_tok_s,
            "predicted_tok_s": self.predicted_tok_s,
            "accepted": self.accepted,
            "pressure": self.pressure,
            "deciding_limit": self.deciding,
            "tightest": self.tightest,
            "predicted_wait_s": self.wait_s,
            "predicted_kv_queue_s": self.queue_s,
            **({"slos": self.slos} if self.slos is not None else {}),
        }


@dataclass
class Placement:
    """Adapters over GPUs, each GPU with its flags; `vllm_serve_commands()` gives one command per GPU."""

    profile: str
    model: str
    algorithm: str
    check: str
    gpus: list[GpuPlan]
    lower_bound: int
    elapsed_s: float
    requested_gpus: int | None = None
    notes: list[str] = field(default_factory=list)
    lengths: LengthSpec | ShareGPTLengths = field(default_factory=ShareGPTLengths)
    arrival: Any = field(default_factory=PoissonArrival)
    adapter_dir: str = DEFAULT_ADAPTER_DIR  # where the adapters lie, for the vllm serve commands
    serve_arguments: tuple[str, ...] = DEFAULT_SERVE  # the profile's server flags (Profile.serve_arguments)
    slos: tuple[str, ...] = ()  # the rule's latency SLOs, as typed (KEY:MS)
    # adapter id -> {GPU index: share of its requests routed there}; None: each adapter on its one GPU
    routing: dict[str, dict[int, float]] | None = None

    def __post_init__(self) -> None:
        if self.routing is None:
            self.routing = {a.id: {g.index: 1.0} for g in self.gpus for a in g.adapters}

    @property
    def replicated(self) -> dict[str, dict[int, float]]:
        """The routes of the adapters served from more than one GPU."""
        return {a: gpus for a, gpus in self.routing.items() if len(gpus) > 1}

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def predicted_tok_s(self) -> float:
        return math.fsum(g.predicted_tok_s for g in self.gpus)

    @property
    def offered_tok_s(self) -> float:
        return math.fsum(g.offered_tok_s for g in self.gpus)

    @property
    def refused_gpus(self) -> list[int]:
        """GPUs whose prediction the rule refuses (only where nothing better was possible)."""
        return [g.index for g in self.gpus if not g.accepted]

    @property
    def proven_fewest(self) -> bool:
        """The cost-model bound holds for every placement that check accepts: a count that meets
        it is the fewest possible."""
        return self.check == "cost-model" and self.gpu_count == self.lower_bound

    def assignment(self) -> dict[str, int]:
        """Adapter id -> GPU index; a replicated adapter's first GPU (its GPUs: `routing`)."""
        return {a: min(gpus) for a, gpus in self.routing.items()}

    def vllm_serve_commands(self, model: str | None = None, adapter_dir: str | None = None) -> list[str]:
        """One `vllm serve` command line per GPU (shell-quoted), each adapter at `adapter_dir`/its id
        (default: the placement's `adapter_dir`); the queue and batch flags are those the prediction assumed."""
        where = self.adapter_dir if adapter_dir is None else adapter_dir
        return [shlex.join(vllm_command(model or self.model, [a.id for a in g.adapters], g.max_loras, g.max_lora_rank,
                                        where, self.serve_arguments)) for g in self.gpus]

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "model": self.model,
            "algorithm": self.algorithm,
            "check": self.check,
            "gpu_count": self.gpu_count,
            "requested_gpus": self.requested_gpus,
            "lower_bound_gpus": self.lower_bound,
            "adapters": len(self.routing),
            "replicated_adapters": len(self.replicated),
            "offered_tok_s": self.offered_tok_s,
            "predicted_tok_s": self.predicted_tok_s,
            "refused_gpus": self.refused_gpus,
            "elapsed_s": self.elapsed_s,
            "notes": list(self.notes),
            "slos": list(self.slos),
            "gpus": [g.to_dict() for g in self.gpus],
            "vllm_serve_commands": self.vllm_serve_commands(),
            "routing": self.routing_dict(),
        }

    def routing_dict(self) -> dict[str, dict[int, float]]:
        """The routing table: adapter id -> {GPU index: weight}, every adapter, weights summing to 1."""
        return {a: dict(gpus) for a, gpus in self.routing.items()}

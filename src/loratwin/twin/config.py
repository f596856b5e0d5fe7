"""Server configuration of one vLLM replica, with vLLM's flag names and defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The reference measurements ran with --max-num-seqs 2048 (vLLM's own default is lower); loratwin
# defaults to it so that its results compare with those measurements.
DEFAULT_MAX_NUM_SEQS = 2048
# vLLM 0.8.5's API-server default token budget with chunked prefill.
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
# The reference runs' benchmark client saturated near this many waiting requests.
REFERENCE_CLIENT_MAX_WAITING = 25_500


class ServerConfig(BaseModel):
    """Flags of `vllm serve` that shape multi-LoRA scheduling.

    `max_cpu_loras` defaults to the number of served adapters and `max_lora_rank` to the largest
    adapter rank, as in the reference measurements. `client_max_waiting` is not a vLLM flag: it
    caps the waiting queue the way the reference runs' benchmark client did (arrivals beyond it
    are held by the client until the queue shrinks); None means no cap.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_loras: int = Field(ge=1)
    max_cpu_loras: int | None = Field(default=None, ge=1)
    max_lora_rank: int | None = Field(default=None, ge=1)
    max_num_seqs: int = Field(default=DEFAULT_MAX_NUM_SEQS, ge=1)
    max_num_batched_tokens: int = Field(default=DEFAULT_MAX_NUM_BATCHED_TOKENS, ge=1)
    client_max_waiting: int | None = Field(default=None, ge=1)

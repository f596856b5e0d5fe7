"""The digital twin of one vLLM replica serving LoRA adapters."""

from loratwin.twin.config import ServerConfig
from loratwin.twin.result import RunResult
from loratwin.twin.simulation import simulate

__all__ = ["RunResult", "ServerConfig", "simulate"]

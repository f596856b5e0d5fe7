"""loratwin: a digital twin of multi-LoRA vLLM serving.

    from loratwin import ServerConfig, reference_layout, simulate
    workload = reference_layout(128, rates=[1.6, 0.8, 0.4], ranks=[8, 16], seed=0)
    result = simulate(workload, ServerConfig(max_loras=32), "llama-3.1-8b-instruct", duration_s=3600)
    result.summary["total_tok_s"], result.starved, result.starved_adapters
"""

from loratwin.errors import InfeasibleConfigError, InputError, LoratwinError
from loratwin.profiles import Profile, builtin_profiles, load_profile
from loratwin.twin import RunResult, ServerConfig, simulate
from loratwin.workload import (
    AdapterSpec,
    RequestTable,
    WorkloadSpec,
    generate_requests,
    load_trace,
    load_workload_yaml,
    reference_layout,
)

__version__ = "0.1.0"

__all__ = [
    "AdapterSpec",
    "InfeasibleConfigError",
    "InputError",
    "LoratwinError",
    "Profile",
    "RequestTable",
    "RunResult",
    "ServerConfig",
    "WorkloadSpec",
    "builtin_profiles",
    "generate_requests",
    "load_profile",
    "load_trace",
    "load_workload_yaml",
    "reference_layout",
    "simulate",
]

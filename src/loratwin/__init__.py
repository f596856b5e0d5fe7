"""loratwin: a digital twin of multi-LoRA vLLM serving.

    from loratwin import ServerConfig, reference_layout, simulate
    workload = reference_layout(128, rates=[1.6, 0.8, 0.4], ranks=[8, 16], seed=0)
    result = simulate(workload, ServerConfig(max_loras=32), "llama-3.1-8b-instruct", duration_s=3600)
    result.summary["total_tok_s"], result.starved, result.starved_adapters
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from loratwin.errors import InfeasibleConfigError, InputError, LoratwinError

if TYPE_CHECKING:
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

from loratwin.version import __version__ as __version__

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

# The public names below are imported on first use: `import loratwin` (and with it every
# `loratwin.<sub>` import, the CLI's included) does not load numpy, numba or pydantic.
_LAZY = {
    "Profile": "loratwin.profiles",
    "builtin_profiles": "loratwin.profiles",
    "load_profile": "loratwin.profiles",
    "RunResult": "loratwin.twin",
    "ServerConfig": "loratwin.twin",
    "simulate": "loratwin.twin",
    "AdapterSpec": "loratwin.workload",
    "RequestTable": "loratwin.workload",
    "WorkloadSpec": "loratwin.workload",
    "generate_requests": "loratwin.workload",
    "load_trace": "loratwin.workload",
    "load_workload_yaml": "loratwin.workload",
    "reference_layout": "loratwin.workload",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

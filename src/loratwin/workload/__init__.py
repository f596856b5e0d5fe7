"""Workloads: adapters and their arrival rates, request lengths, generated requests, trace replay."""

from loratwin.workload.lengths import sample_lengths
from loratwin.workload.requests import RequestTable, generate_requests
from loratwin.workload.spec import (
    AdapterSpec,
    LengthSpec,
    WorkloadSpec,
    load_workload_yaml,
    reference_layout,
)
from loratwin.workload.trace import load_trace

__all__ = [
    "AdapterSpec",
    "LengthSpec",
    "RequestTable",
    "WorkloadSpec",
    "generate_requests",
    "load_trace",
    "load_workload_yaml",
    "reference_layout",
    "sample_lengths",
]

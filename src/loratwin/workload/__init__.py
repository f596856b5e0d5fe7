"""Workloads: adapters and their arrival processes, request lengths, generated requests, trace replay."""

from loratwin.workload.describe import describe_workload
from loratwin.workload.lengths import sample_lengths
from loratwin.workload.load import load_workload_yaml
from loratwin.workload.requests import RequestTable, generate_requests
from loratwin.workload.spec import (
    AdapterSpec,
    ArrivalSpec,
    GammaArrival,
    LengthSpec,
    PoissonArrival,
    ScheduleSegment,
    ShareGPTLengths,
    UnpredictableArrival,
    WorkloadSpec,
    reference_layout,
    zipf_layout,
)
from loratwin.workload.trace import load_azure_trace, load_trace

__all__ = [
    "AdapterSpec",
    "ArrivalSpec",
    "GammaArrival",
    "LengthSpec",
    "ShareGPTLengths",
    "PoissonArrival",
    "RequestTable",
    "ScheduleSegment",
    "UnpredictableArrival",
    "WorkloadSpec",
    "describe_workload",
    "generate_requests",
    "load_azure_trace",
    "load_trace",
    "load_workload_yaml",
    "reference_layout",
    "sample_lengths",
    "zipf_layout",
]

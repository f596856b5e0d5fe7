"""The placement a re-placement starts from (`place --from`), read from what `place --out` wrote:
the file is checked as the cluster twin reads it (`read.placement_cluster`: GPUs, flags, routing),
and its profile, each GPU's index and flags, and the routing table are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratwin.errors import InputError
from loratwin.plan.placement.moves import Running, RunningGpu
from loratwin.plan.placement.read import placement_cluster, read_placement_doc
from loratwin.workload import AdapterSpec, WorkloadSpec
from loratwin.workload.spec import adapter_id_problem


def read_running(path: str | Path) -> Running:
    """The placement file at `path` as `replace` takes it; every mistake names the file (as --from)."""
    source = f"--from {path}"
    doc = read_placement_doc(path)
    ids = _placed_ids(doc, source)
    if not ids:
        raise InputError(f"{source}: expected a placement: GPUs with their adapters (gpus:, as place --out writes)")
    # the file names no ranks: a placeholder rank lets the cluster's checks read its structure
    spec = placement_cluster(doc, WorkloadSpec(adapters=tuple(AdapterSpec(id=a, rank=1) for a in ids)), source)
    profile = doc.get("profile")
    if not isinstance(profile, str) or not profile:
        raise InputError(f"{source}: profile: expected the name of the profile the placement was made for")
    indices = [g["gpu"] for g in doc["gpus"]]  # checked by placement_cluster
    gpus = tuple(RunningGpu(indices[p], r.server.max_loras, r.server.max_lora_rank) for p, r in enumerate(spec.replicas))
    routing = {a: {indices[p]: w for p, w in sorted(route.items())} for a, route in spec.routing.items()}
    return Running(profile, gpus, routing)


def _placed_ids(doc: Any, source: str) -> list[str]:
    """Every adapter id the GPUs list, in order, once each (placement_cluster judges the rest)."""
    gpus = doc.get("gpus") if isinstance(doc, dict) else None
    ids: dict[str, None] = {}
    for g in gpus if isinstance(gpus, list) else []:
        listed = g.get("adapters") if isinstance(g, dict) else None
        for a in listed if isinstance(listed, list) else []:
            if isinstance(a, str):
                problem = adapter_id_problem(a)
                if problem is not None:
                    raise InputError(f"{source}: gpus: {problem}")
                ids[a] = None
    return list(ids)

"""Read a placement file (what `place --out` writes, .yaml or .json) into the cluster twin's input.

What is read: `gpus: [{gpu, adapters: [ids], max_loras, max_lora_rank[, max_cpu_loras]}]` and, when
present, `routing: {adapter_id: {gpu: weight}}` (each adapter's weights > 0, summing to 1; without it
an adapter's requests are split evenly over the GPUs holding it). The other keys are `place`'s
report and are not needed. Every mistake is one line naming the file and the field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from loratwin import budget
from loratwin.errors import InputError
from loratwin.profiles.serving import check_metrics_poll
from loratwin.textfile import read_user_text
from loratwin.twin import ServerConfig
from loratwin.twin.cluster import ClusterSpec, Replica
from loratwin.twin.cluster.spec import WEIGHT_SUM_TOLERANCE
from loratwin.workload import WorkloadSpec
from loratwin.yamlfile import parse_yaml

SUFFIXES = (".yaml", ".yml", ".json")
MAX_LISTED = 5


def read_placement(path: str | Path, workload: WorkloadSpec, *, client_max_waiting: int | None = None) -> ClusterSpec:
    """The cluster a placement file describes, serving `workload` (whose adapters it must place,
    each of them and no other)."""
    return placement_cluster(read_placement_doc(path), workload, str(path), client_max_waiting=client_max_waiting)


def read_placement_doc(path: str | Path) -> Any:
    """The content of a placement file (.yaml or .json), not yet checked."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path}: expected a placement file (.yaml or .json, as place --out writes)")
    if path.is_file():
        budget.require(budget.yaml_estimate(path.stat().st_size, path))
    text = read_user_text(path, "a placement file (.yaml or .json, as place --out writes)")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}") from None
    else:
        doc = parse_yaml(text, str(path))
    return doc


def placement_cluster(doc: Any, workload: WorkloadSpec, source: str, *,
                      client_max_waiting: int | None = None) -> ClusterSpec:
    """The cluster of a placement document (`Placement.to_dict()`, or a file's content); `source`
    names it in errors."""
    if not isinstance(doc, dict) or "gpus" not in doc:
        raise InputError(f"{source}: expected a placement (a mapping with gpus:, as place --out writes)")
    gpus = doc["gpus"]
    if not isinstance(gpus, list) or not gpus:
        raise InputError(f"{source}: gpus: expected a non-empty list of GPUs")
    known = {a.id for a in workload.adapters}
    replicas, position_of = [], {}
    for i, g in enumerate(gpus):
        where = f"{source}: gpus[{i}]"
        if not isinstance(g, dict):
            raise InputError(f"{where}: expected a mapping with gpu, adapters, max_loras, max_lora_rank")
        index = _integer(g, "gpu", where, minimum=0)
        if index in position_of:
            raise InputError(f"{where}.gpu: GPU {index} is listed twice")
        ids = g.get("adapters")
        if not isinstance(ids, list) or not ids or not all(isinstance(a, str) for a in ids):
            raise InputError(f"{where}.adapters: expected a non-empty list of adapter ids")
        if len(set(ids)) != len(ids):
            raise InputError(f"{where}.adapters: an adapter is listed twice")
        unknown = [a for a in ids if a not in known]
        if unknown:
            raise InputError(f"{where}.adapters: not in the workload: {_listed(unknown)}")
        max_loras = _integer(g, "max_loras", where, minimum=1)
        max_lora_rank = _integer(g, "max_lora_rank", where, minimum=1)
        max_cpu_loras = _integer(g, "max_cpu_loras", where, minimum=1) if "max_cpu_loras" in g else len(ids)
        try:
            server = ServerConfig(max_loras=max_loras, max_cpu_loras=max_cpu_loras, max_lora_rank=max_lora_rank,
                                  client_max_waiting=client_max_waiting)
        except ValueError as exc:  # pydantic's ValidationError: a count beyond what the engine holds
            e = exc.errors()[0]
            raise InputError(f"{where}.{e['loc'][0]}: {e['msg']}, got {e.get('input')!r}") from None
        position_of[index] = len(replicas)
        replicas.append(Replica(f"GPU {index}", server, tuple(ids)))
    placed = {a for r in replicas for a in r.adapters}
    missing = [a.id for a in workload.adapters if a.id not in placed]
    if missing:
        raise InputError(f"{source}: gpus: adapters of the workload on no GPU: {_listed(missing)}")
    routing = _routing(doc.get("routing"), replicas, position_of, source)
    return ClusterSpec(workload, tuple(replicas), routing)


def _routing(table: Any, replicas: list[Replica], position_of: dict[int, int], source: str) -> dict[str, dict[int, float]]:
    holders: dict[str, list[int]] = {}
    for position, replica in enumerate(replicas):
        for a in replica.adapters:
            holders.setdefault(a, []).append(position)
    if table is None:
        return {a: {r: 1.0 / len(rs) for r in rs} for a, rs in holders.items()}
    if not isinstance(table, dict):
        raise InputError(f"{source}: routing: expected a mapping adapter_id: {{gpu: weight}}")
    routing: dict[str, dict[int, float]] = {}
    for adapter_id, weights in table.items():
        where = f"{source}: routing.{adapter_id}"
        if adapter_id not in holders:
            raise InputError(f"{where}: no GPU holds this adapter")
        if not isinstance(weights, dict) or not weights:
            raise InputError(f"{where}: expected a mapping gpu: weight")
        routed: dict[int, float] = {}
        for gpu, weight in weights.items():
            index = _gpu_key(gpu)
            if index is None or index not in position_of:
                raise InputError(f"{where}: {gpu!r} is not a GPU of gpus: (its GPUs: {_listed([str(i) for i in position_of])})")
            position = position_of[index]
            if position not in holders[adapter_id]:
                raise InputError(f"{where}.{index}: GPU {index} does not hold {adapter_id} (gpus[{position}].adapters "
                                 "does not list it)")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (math.isfinite(weight) and weight > 0):
                raise InputError(f"{where}.{index}: expected a weight > 0, got {weight!r}")
            routed[position] = float(weight)
        total = math.fsum(routed.values())
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise InputError(f"{where}: the weights must sum to 1, got {total:g}")
        unrouted = [replicas[r].name for r in holders[adapter_id] if r not in routed]
        if unrouted:
            raise InputError(f"{where}: {', '.join(unrouted)} {'holds' if len(unrouted) == 1 else 'hold'} it but "
                             f"{'gets' if len(unrouted) == 1 else 'get'} no weight")
        routing[adapter_id] = routed
    uncovered = [a for a in holders if a not in routing]
    if uncovered:
        raise InputError(f"{source}: routing: no weights for {_listed(uncovered)} (routing covers every placed adapter)")
    return routing


def _gpu_key(key: Any) -> int | None:
    """GPU indices as YAML writes them (integers) or JSON (digit strings)."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    return None


def _integer(g: dict, name: str, where: str, *, minimum: int) -> int:
    value = g.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{where}.{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _listed(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_LISTED])
    return shown + (f" (+{len(ids) - MAX_LISTED} more)" if len(ids) > MAX_LISTED else "")



def placement_profile(doc: Any, source: str) -> str:
    """The profile a placement document names (`profile:`), for a command not given one."""
    name = doc.get("profile") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        raise InputError(f"{source}: profile: expected the profile's name (or give --profile)")
    return name


def placement_serving(doc: Any, source: str) -> tuple[bool, float] | None:
    """The serving conditions a placement was judged under (`serving: {warm, metrics_poll_s}`, as
    `place` writes it), or None when it records none."""
    serving = doc.get("serving") if isinstance(doc, dict) else None
    if serving is None:
        return None
    if not isinstance(serving, dict):
        raise InputError(f"{source}: serving: expected a mapping with warm and metrics_poll_s")
    unknown = sorted(set(map(str, serving)) - {"warm", "metrics_poll_s"})
    if unknown:
        raise InputError(f"{source}: serving.{unknown[0]}: unknown field; expected warm and metrics_poll_s")
    missing = [k for k in ("warm", "metrics_poll_s") if k not in serving]
    if missing:
        raise InputError(f"{source}: serving.{missing[0]}: missing; expected warm and metrics_poll_s")
    warm, poll = serving["warm"], serving["metrics_poll_s"]
    if not isinstance(warm, bool):
        raise InputError(f"{source}: serving.warm: expected true or false, got {warm!r}")
    if isinstance(poll, bool) or not isinstance(poll, int | float):
        raise InputError(f"{source}: serving.metrics_poll_s: expected a number of seconds, got {poll!r}")
    check_metrics_poll(float(poll), f"{source}: serving.metrics_poll_s")  # the --metrics-poll rule
    return warm, float(poll)

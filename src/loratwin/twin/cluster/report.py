"""What a cluster run produced: per GPU, per adapter and cluster totals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from loratwin.twin.result import RunResult, _stats_ms

if TYPE_CHECKING:
    from loratwin.twin.cluster.spec import ClusterSpec


@dataclass
class ClusterResult:
    """Every replica's RunResult (in the spec's order) and where each request went
    (`routes[i]`: the replica of request i, whose adapter index is `request_adapter[i]`)."""

    spec: ClusterSpec
    router: str
    duration_s: float
    seed: int
    replicas: list[RunResult]
    routes: np.ndarray = field(repr=False)
    request_adapter: np.ndarray = field(repr=False)
    spill_threshold: int = 0

    @property
    def total_tok_s(self) -> float:
        return math.fsum(r.total_tok_s for r in self.replicas)

    @property
    def offered_tok_s(self) -> float:
        return math.fsum(float(r.summary["offered_tok_s"]) for r in self.replicas)

    @property
    def served_share(self) -> float:
        """Share of the offered load served (completed tokens over asked-for tokens)."""
        offered = self.offered_tok_s
        return self.total_tok_s / offered if offered > 0 else 1.0

    @property
    def starved_gpus(self) -> list[str]:
        """Replicas starved by the published rule (1 - throughput / offered >= threshold)."""
        return [replica.name for replica, r in zip(self.spec.replicas, self.replicas) if r.starved]

    def gpu_rows(self) -> list[dict[str, Any]]:
        rows = []
        for replica, r in zip(self.spec.replicas, self.replicas):
            s = r.summary
            rows.append({
                "gpu": replica.name,
                "adapters": len(replica.adapters),
                "max_loras": r.config["server"]["max_loras"],
                "requests": s["arrived"],
                "completed": s["completed"],
                "offered_tok_s": s["offered_tok_s"],
                "total_tok_s": s["total_tok_s"],
                "throughput_over_offered": s["throughput_over_offered"],
                "starved": r.starved,
                "starved_adapters": r.starved_adapters,
                "mean_ttft_ms": s["mean_ttft_ms"],
                "p99_ttft_ms": s["p99_ttft_ms"],
                "mean_itl_ms": s.get("mean_itl_ms"),
                "p99_itl_ms": s.get("p99_itl_ms"),
            })
        return rows

    def adapter_rows(self) -> list[dict[str, Any]]:
        """Per adapter over the cluster: requests, completed share, TTFT, and its split (requests
        per replica)."""
        adapters = self.spec.workload.adapters
        ids, completed, ttft = [], [], []
        for r in self.replicas:
            ids.append(r.requests["adapter_id"])
            completed.append(r.requests["completed"])
            ttft.append(r.requests["ttft_ms"])
        ids_all = np.concatenate(ids) if ids else np.empty(0, object)
        completed_all = np.concatenate(completed) if completed else np.empty(0, bool)
        ttft_all = np.concatenate(ttft) if ttft else np.empty(0)
        order = np.argsort(ids_all, kind="stable")
        sorted_ids = ids_all[order]
        split = np.zeros((len(adapters), len(self.replicas)), np.int64)
        np.add.at(split, (self.request_adapter, self.routes), 1)
        rows = []
        for a, spec in enumerate(adapters):
            lo, hi = np.searchsorted(sorted_ids, spec.id, "left"), np.searchsorted(sorted_ids, spec.id, "right")
            idx = order[lo:hi]
            done = idx[completed_all[idx]]
            stats = _stats_ms(ttft_all[done], "ttft")
            rows.append({
                "adapter_id": spec.id,
                "requests": int(len(idx)),
                "completed_share": float(len(done) / len(idx)) if len(idx) else 1.0,
                "mean_ttft_ms": stats["mean_ttft_ms"],
                "p99_ttft_ms": stats["p99_ttft_ms"],
                "split": {self.spec.replicas[r].name: int(split[a, r]) for r in np.flatnonzero(split[a])},
            })
        return rows

    def totals(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "gpus": len(self.replicas),
            "duration_s": self.duration_s,
            "seed": self.seed,
            "requests": int(len(self.routes)),
            "completed": int(sum(r.summary["completed"] for r in self.replicas)),
            "total_tok_s": self.total_tok_s,
            "offered_tok_s": self.offered_tok_s,
            "served_share": self.served_share,
            "starved_gpus": self.starved_gpus,
            "spill_threshold": self.spill_threshold if self.router == "affinity" else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.totals(), "gpus": self.gpu_rows(), "adapters": self.adapter_rows()}

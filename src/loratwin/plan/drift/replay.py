"""Drift replay: a drifting workload served period by period. The first period is placed afresh;
every later one is re-placed from the previous placement (`loratwin.plan.placement.replace`: the
fewest adapters moved), then simulated with that period's rates by the cluster twin (every GPU
at its flags behind a router, the routing weights the placement's), from empty servers (queues do not carry over from one period to the next), for `window_s` (the rule's
window by default: would the placement hold if the period's rates lasted; the period's own length
counts requests still queued at its end as unserved, which the rule's wait limit allows).

Per period: GPUs, adapters moved and added with the loads they cost, restarted servers, the GPUs
the rule refused as they were, starved GPUs (the published rule on the twin's numbers) and the
share of the offered tokens served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loratwin.plan.drift.periods import Period
from loratwin.plan.judge import AcceptanceRule, GpuCheck, resolve_profile
from loratwin.plan.placement import place, verify_placement
from loratwin.plan.placement.moves import load_ms
from loratwin.plan.placement.replace import replace
from loratwin.profiles import Profile


@dataclass
class PeriodResult:
    index: int
    start_s: float
    duration_s: float
    simulated_s: float  # the twin's window for this period's placement at its rates
    adapters: int
    gpus: int
    moves: int
    added: int
    dropped: int
    load_ms: float  # the loads the moves and the new adapters cost (disk -> CPU -> GPU each)
    restarts: int
    refused_before: int  # GPUs the rule refused as they were, under this period's rates
    fresh_moves: int  # what a fresh placement would have moved
    starved_gpus: list[int]
    refused_gpus: list[int]  # refused by the rule on the twin's numbers
    offered_tok_s: float
    served_tok_s: float
    elapsed_s: float
    placement: dict[str, Any]  # the period's placement, with its moves

    @property
    def served_share(self) -> float:
        return self.served_tok_s / self.offered_tok_s if self.offered_tok_s > 0 else 1.0

    def row(self) -> dict[str, Any]:
        """The period's figures, without its placement."""
        row = {k: v for k, v in self.__dict__.items() if k != "placement"}
        row["served_share"] = self.served_share
        return row


def replay_drift(periods: Sequence[Period], profile: Profile | str, check: GpuCheck, rule: AcceptanceRule,
                 seed: int = 0, workers: int | None = None, window_s: float | None = None,
                 router: str | None = "weighted-random",
                 on_period: Callable[[PeriodResult], None] | None = None) -> list[PeriodResult]:
    """Every period re-placed from the one before and simulated (module docstring): by the cluster
    twin behind `router` (loratwin.twin.cluster.ROUTERS: the period's requests drawn once per
    adapter and routed by the placement's weights), or with None every GPU on its own; `on_period`
    gets each result as it finishes (an interrupted replay keeps those)."""
    profile = resolve_profile(profile)
    results: list[PeriodResult] = []
    previous = None
    for period in periods:
        started = time.perf_counter()
        if previous is None:
            placement = place(period.workload, profile, check=check)
            doc = placement.to_dict()
            added = [load_ms(profile, g.max_lora_rank, a.rank) for g in placement.gpus for a in g.adapters]
            moved, dropped, restarts, refused, fresh = [], 0, 0, 0, 0
        else:
            result = replace(previous, period.workload, profile, check=check)
            placement, doc = result.placement, result.to_dict()
            moved, added = [m.load_ms for m in result.moves], [m.load_ms for m in result.added]
            dropped, restarts, refused = len(result.dropped), len(result.restarts), len(result.refused)
            fresh = result.fresh_moves
        simulated_s = window_s if window_s is not None else rule.window_s
        run = verify_placement(placement, profile, duration_s=simulated_s, rule=rule, seed=seed + period.index,
                               workers=workers, router=router, workload=period.workload)
        doc["verification"] = run.to_dict()
        outcome = PeriodResult(
            index=period.index, start_s=period.start_s, duration_s=period.duration_s, simulated_s=simulated_s,
            adapters=len(period.workload.adapters), gpus=placement.gpu_count, moves=len(moved), added=len(added),
            dropped=dropped, load_ms=sum(moved) + sum(added), restarts=restarts, refused_before=refused,
            fresh_moves=fresh, starved_gpus=run.starved_gpus, refused_gpus=run.refused_gpus,
            offered_tok_s=run.offered_tok_s, served_tok_s=run.total_tok_s,
            elapsed_s=time.perf_counter() - started, placement=doc,
        )
        results.append(outcome)
        if on_period is not None:
            on_period(outcome)
        previous = placement
    return results

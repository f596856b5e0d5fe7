"""The twin as an estimator: simulate every candidate `max_loras` of a GPU's share (slow, exact
up to the twin's fidelity), and read a run's numbers as a prediction the rule judges."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loratwin.plan.judge.rule import AcceptanceRule, Prediction
from loratwin.plan.judge.slots import resolve_profile, startable_slots
from loratwin.plan.judge.verdict import GpuVerdict, judge_by_list, judged
from loratwin.profiles import Profile
from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING
from loratwin.workload import AdapterSpec, LengthSpec, PoissonArrival, ShareGPTLengths, WorkloadSpec

if TYPE_CHECKING:
    from loratwin.twin.result import RunResult

# The twin simulates fewer max_loras values than the cost model tries: each costs a run.
TWIN_SLOT_CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384)


def twin_prediction(result: RunResult, max_loras: int) -> Prediction:
    """A twin run read as a prediction: the throughput shortfall over its window, the mean TTFT of
    requests that found their adapter idle (those that must win a place in the batch) and of all
    requests (a batch that outgrows the KV cache queues every request), and the latency
    percentiles the SLOs judge. The per-adapter rule is reported by the run, not judged: over short
    windows it flags waits well under a minute."""
    summary = result.summary
    return Prediction(
        max_loras,
        float(result.total_tok_s),
        shortfall=1.0 - float(summary["throughput_over_offered"]),
        slot_wait_s=result.idle_start_ttft_s,
        mean_ttft_s=result.mean_ttft_s,
        mean_ttft_all_sent_s=_seconds(summary.get("mean_ttft_all_sent_ms")),
        p99_ttft_all_sent_s=_seconds(summary.get("p99_ttft_all_sent_ms")),
        p99_itl_s=_seconds(summary.get("p99_itl_ms")),
        p99_tpot_s=_seconds(summary.get("p99_tpot_ms")),
    )


def _seconds(ms: object) -> float | None:
    return None if ms is None else float(ms) / 1000  # type: ignore[arg-type]


@dataclass
class TwinCheck:
    """Simulate every candidate max_loras with the twin, over the rule's window (the reference
    client's queue cap, a fixed seed, the workload's own arrival process); verdicts cached by the
    multiset of adapters. `place` runs it over the same window as `--verify`: shorter runs miss the
    requests that wait longest."""

    rule: AcceptanceRule = field(default_factory=AcceptanceRule)
    seed: int = 0
    client_max_waiting: int | None = REFERENCE_CLIENT_MAX_WAITING
    lengths: LengthSpec | ShareGPTLengths = field(default_factory=ShareGPTLengths)
    arrival: object = field(default_factory=PoissonArrival)
    slot_grid: Sequence[int] = TWIN_SLOT_CANDIDATES
    name: str = "twin"
    fast: bool = False
    # the SLO quantities of a Prediction the twin fills (every one: loratwin.plan.judge.handover)
    predicts_slos: frozenset = frozenset({"mean_ttft_all_sent_s", "p99_ttft_all_sent_s", "p99_itl_s", "p99_tpot_s"})
    simulations: int = 0
    _cache: dict = field(default_factory=dict, repr=False)
    _runs: dict = field(default_factory=dict, repr=False)  # (share, max_loras) -> (offered tok/s, prediction)

    def share_judge(self, adapters: Sequence[AdapterSpec], profile: Profile) -> Callable[[Sequence[int]], GpuVerdict]:
        return judge_by_list(self, adapters, resolve_profile(profile))

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        profile = resolve_profile(profile)
        ordered = tuple(sorted(adapters, key=_adapter_key))
        key = (profile.name, profile.model_dump_json(), tuple(_adapter_key(a) for a in ordered), tuple(self.slot_grid))
        if key in self._cache:
            return self._cache[key]
        served = len(ordered)
        max_rank, startable, reason = startable_slots(profile, [a.rank for a in ordered], served, self.slot_grid)
        if not startable:
            self._cache[key] = GpuVerdict(served, max_rank, 0.0, (), reason)
            return self._cache[key]
        offered, predictions = self.predict_at(ordered, profile, [s for s, _ in startable], max_rank)
        verdict = judged(served, max_rank, offered, predictions, self.rule, profile)
        self._cache[key] = verdict
        return verdict

    def predict_at(self, adapters: Sequence[AdapterSpec], profile: Profile, max_loras_values: Sequence[int],
                   max_lora_rank: int) -> tuple[float, list[Prediction]]:
        """The offered tok/s and the twin's prediction at each of `max_loras_values` (values that start),
        each run once per multiset of adapters."""
        from loratwin.twin import ServerConfig, simulate

        profile = resolve_profile(profile)
        ordered = tuple(sorted(adapters, key=_adapter_key))
        share = (profile.name, profile.model_dump_json(), tuple(_adapter_key(a) for a in ordered), max_lora_rank)
        # ids are renamed so that equal multisets simulate identically
        workload = WorkloadSpec(
            adapters=tuple(a.model_copy(update={"id": f"a{i}"}) for i, a in enumerate(ordered)),
            lengths=self.lengths,
            arrival=self.arrival,
        )
        predictions, offered = [], 0.0
        for s in max_loras_values:
            run = self._runs.get((share, s))
            if run is None:
                server = ServerConfig(max_loras=s, max_cpu_loras=len(ordered), max_lora_rank=max_lora_rank,
                                      client_max_waiting=self.client_max_waiting)
                result = simulate(workload, server, profile, duration_s=self.rule.window_s, seed=self.seed,
                                  starvation_threshold=self.rule.starvation_threshold)
                self.simulations += 1
                run = self._runs[(share, s)] = (float(result.summary["offered_tok_s"]), twin_prediction(result, s))
            offered = run[0]
            predictions.append(run[1])
        return offered, predictions


def _adapter_key(a: AdapterSpec) -> tuple:
    arrival = "" if a.arrival is None else json.dumps(a.arrival.model_dump(), sort_keys=True)
    return (a.rank, a.rate_req_s, arrival)

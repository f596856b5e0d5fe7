"""SLOs an estimator does not predict, judged by the twin.

The cost model and the learned models predict means (waits, throughput, a probability of starving),
not latency percentiles. Given a rule with an SLO on a quantity its estimator leaves out,
`make_check` returns a `TwinJudgesSlos`: the estimator screens every share as before (a share it
refuses stays refused, and the twin never runs on it), and on a share it accepts the twin runs at
the few max_loras that matter (the estimator's best and the largest it accepts: fewest slot waits)
and fills the missing SLO quantities; the rule then judges the merged prediction. Bisections on the
served count (recommend, the greedy's fill) run the twin about twice per probe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from loratwin.plan.judge.rule import AcceptanceRule, Prediction, slo_quantity
from loratwin.plan.judge.twin import TwinCheck
from loratwin.plan.judge.verdict import GpuCheck, GpuVerdict, judge_by_list, judged
from loratwin.profiles import Profile
from loratwin.slo import Slo
from loratwin.workload import AdapterSpec

# twin runs per share the screen accepts: its best max_loras and the largest it accepts
TWIN_RUNS_PER_SHARE = 2


def unpredicted_slos(check: GpuCheck, rule: AcceptanceRule) -> tuple[Slo, ...]:
    """The rule's SLOs whose quantity `check` does not predict (its `predicts_slos`)."""
    known = getattr(check, "predicts_slos", frozenset())
    return tuple(slo for slo in rule.slos if slo_quantity(slo) not in known)


class TwinJudgesSlos:
    """`screen` judges every share; the twin (`twin`, over the rule's window) fills the SLO
    quantities `screen` does not predict, on the shares `screen` accepts."""

    fast = False

    def __init__(self, screen: GpuCheck, twin: TwinCheck, missing: Sequence[Slo]) -> None:
        self.screen = screen
        self.twin = twin
        self.missing = tuple(missing)
        self.rule = screen.rule
        self.name = f"{screen.name} (SLOs: twin)"
        self._quantities = tuple(dict.fromkeys(slo_quantity(s) for s in self.missing))

    @property
    def simulations(self) -> int:
        return self.twin.simulations

    @property
    def note(self) -> str:
        """One line for the command's output: who judges what."""
        what = ", ".join(dict.fromkeys(_short_label(s) for s in self.missing))
        who, do, does = _estimator(self.screen.name)
        return (f"the {who} {do} not predict {what}: the twin judges the SLOs ({TWIN_RUNS_PER_SHARE} runs of "
                f"{self.rule.window_s:g} s on each share the {who} {does})")

    def share_judge(self, adapters: Sequence[AdapterSpec], profile: Profile) -> Callable[[Sequence[int]], GpuVerdict]:
        return judge_by_list(self, adapters, profile)

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        verdict = self.screen.evaluate(adapters, profile)
        accepted = [o for o in verdict.options if o.accepted]
        if not accepted or verdict.max_lora_rank is None:
            return verdict
        slots = list(dict.fromkeys([verdict.best.max_loras, max(o.max_loras for o in accepted)]))
        _, runs = self.twin.predict_at(adapters, profile, slots, verdict.max_lora_rank)
        by_slots = {p.max_loras: p for p in runs}
        predictions: list[Prediction] = []
        for option in verdict.options:
            run = by_slots.get(option.max_loras)
            if run is not None:
                predictions.append(replace(option.prediction, **{q: getattr(run, q) for q in self._quantities}))
            elif not option.accepted:
                predictions.append(option.prediction)  # refused by the screen: kept to say why
        return judged(verdict.served, verdict.max_lora_rank, verdict.offered_tok_s, predictions, self.rule, profile)


def _short_label(slo: Slo) -> str:
    return slo.label.replace("time to first token", "TTFT").replace("inter-token latency", "ITL").replace(
        "time per output token", "TPOT")


def _estimator(name: str) -> tuple[str, str, str]:
    """The estimator's name in a sentence, with its verbs (do not predict, accept)."""
    if name == "learned":
        return "learned models", "do", "accept"
    return ("cost model" if name == "cost-model" else f"{name} estimator"), "does", "accepts"


__all__ = ["TWIN_RUNS_PER_SHARE", "TwinJudgesSlos", "unpredicted_slos"]

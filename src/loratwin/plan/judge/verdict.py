"""A GPU's verdict: for every `max_loras` that starts, the estimator's prediction and the rule's
judgement of it; and the protocol every estimator follows."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from loratwin.plan.judge.rule import AcceptanceRule, Judgement, Prediction
from loratwin.profiles import Profile
from loratwin.workload import AdapterSpec

# Predicted throughputs this close count as equal when choosing max_loras (then the lower pressure wins).
THROUGHPUT_TIE = 0.005


@dataclass(frozen=True)
class SlotOption:
    """One `max_loras` value for a GPU's share: what the estimator predicts there, and the rule's
    judgement of it."""

    prediction: Prediction
    judgement: Judgement

    @property
    def max_loras(self) -> int:
        return self.prediction.max_loras

    @property
    def predicted_tok_s(self) -> float:
        return self.prediction.predicted_tok_s

    @property
    def accepted(self) -> bool:
        return self.judgement.accepted

    @property
    def pressure(self) -> float:
        return self.judgement.pressure

    @property
    def strain(self) -> float:
        return self.judgement.strain

    @property
    def deciding(self) -> str:
        return self.judgement.deciding

    @property
    def tightest(self) -> str:
        """The deciding limit's short name."""
        return self.judgement.short

    @property
    def wait_s(self) -> float:
        """The mean wait for a place in the batch (0 when not predicted)."""
        return self.prediction.slot_wait_s or 0.0

    @property
    def queue_s(self) -> float:
        """The mean wait for KV admission (0 when not predicted)."""
        return self.prediction.kv_queue_s or 0.0


@dataclass(frozen=True)
class GpuVerdict:
    """An estimator's predictions for one GPU's share of adapters, judged by the rule: one option
    per `max_loras` that fits in memory."""

    served: int
    max_lora_rank: int | None
    offered_tok_s: float
    options: tuple[SlotOption, ...]
    reason: str = ""  # why no option fits in memory, when `options` is empty

    @functools.cached_property
    def best(self) -> SlotOption | None:
        """The accepted option with the highest predicted throughput (near-ties: the lowest
        pressure, then the fewest slots); None when the rule refuses every option."""
        safe = [o for o in self.options if o.accepted]
        if not safe:
            return None
        top = max(o.predicted_tok_s for o in safe)
        close = [o for o in safe if o.predicted_tok_s >= top * (1 - THROUGHPUT_TIE)]
        return min(close, key=lambda o: (round(o.pressure, 3), o.max_loras))

    @property
    def ok(self) -> bool:
        return self.best is not None

    @property
    def strain(self) -> float:
        """The least strain over the options: at most 1 when some option is accepted."""
        return min((o.strain for o in self.options), default=1e6)

    def chosen(self) -> SlotOption | None:
        """The option to run: the best accepted one, or when the rule refuses all, the least
        strained (closest to its limits), then the highest predicted throughput. Throughput alone
        cannot choose there: a refused share's predicted throughput is often its capacity at every
        max_loras, and the first of equals would be max_loras 1."""
        if self.best is not None:
            return self.best
        if not self.options:
            return None
        return min(self.options, key=lambda o: (o.strain, -o.predicted_tok_s, o.max_loras))

    def option(self, max_loras: int) -> SlotOption | None:
        return next((o for o in self.options if o.max_loras == max_loras), None)

    def explain(self) -> str:
        """One line: the chosen max_loras and the limit that decides it, or why nothing starts."""
        option = self.chosen()
        if option is None:
            return self.reason or "no max_loras value starts"
        state = "accepted" if option.accepted else "refused"
        return f"max_loras {option.max_loras} {state}: {option.deciding}"


def judged(served: int, max_lora_rank: int | None, offered_tok_s: float, predictions: Sequence[Prediction],
           rule: AcceptanceRule, profile: Profile) -> GpuVerdict:
    """The verdict of the rule on an estimator's predictions."""
    limits = rule.limits(profile)
    options = tuple(SlotOption(p, rule.judge_with(limits, p)) for p in predictions)
    return GpuVerdict(served, max_lora_rank, offered_tok_s, options)


@runtime_checkable
class GpuCheck(Protocol):
    """An estimator judged by an acceptance rule: anything that can judge one GPU's share of
    adapters. `fast` estimators (microseconds a call) let placement search widely."""

    name: str
    rule: AcceptanceRule
    fast: bool

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict: ...

    def share_judge(self, adapters: Sequence[AdapterSpec], profile: Profile) -> Callable[[Sequence[int]], GpuVerdict]:
        """A function judging subsets (adapter indices, sorted) of `adapters`; estimators that
        work on arrays prepare them once here."""
        ...


def judge_by_list(check: GpuCheck, adapters: Sequence[AdapterSpec],
                  profile: Profile) -> Callable[[Sequence[int]], GpuVerdict]:
    """`share_judge` for an estimator without a faster way: evaluate the adapters of each subset."""
    items = list(adapters)
    return lambda members: check.evaluate([items[i] for i in members], profile)

"""A GPU share judged once: the estimator's verdicts memoised by the set of adapter indices
(algorithms revisit the same shares)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loratwin.plan.judge import GpuCheck, GpuVerdict
from loratwin.profiles import Profile
from loratwin.workload import AdapterSpec


class ShareJudge:
    """Judges subsets of `adapters` (lists of indices) with `check`, each set once."""

    def __init__(self, check: GpuCheck, profile: Profile, adapters: Sequence[AdapterSpec]) -> None:
        self.check = check
        self.profile = profile
        self.adapters = list(adapters)
        self.calls = 0
        self._memo: dict[tuple[int, ...], GpuVerdict] = {}
        self._judge: Callable[[Sequence[int]], GpuVerdict] = check.share_judge(self.adapters, profile)

    def __call__(self, members: Sequence[int]) -> GpuVerdict:
        key = tuple(sorted(members))
        verdict = self._memo.get(key)
        if verdict is None:
            self.calls += 1
            verdict = self._memo[key] = self._judge(key)
        return verdict

    def ok(self, members: Sequence[int]) -> bool:
        return self(members).ok

    def scaled(self, scale: float) -> ShareJudge:
        """The same judge with every rate `scale` times higher (to fill GPUs with headroom)."""
        return ShareJudge(self.check, self.profile,
                          [a.model_copy(update={"rate_req_s": a.rate_req_s * scale}) for a in self.adapters])

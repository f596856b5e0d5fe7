"""A GPU share judged once: the estimator's verdicts memoised by the set of adapter indices
(algorithms revisit the same shares). A share holding two replicas of one adapter (the same id,
`replicas`) is refused: vLLM serves an adapter once per GPU, so replicas go to different GPUs."""

from __future__ import annotations

from collections import Counter
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
        # items sharing an id (replicas of one adapter): indices of those ids, by index
        ids = Counter(a.id for a in self.adapters)
        self._replicated = {i for i, a in enumerate(self.adapters) if ids[a.id] > 1}

    def __call__(self, members: Sequence[int]) -> GpuVerdict:
        key = tuple(sorted(members))
        verdict = self._memo.get(key)
        if verdict is None:
            twice = self._twice(key)
            if twice is not None:
                return GpuVerdict(len(key), None, 0.0, (), f"adapter {twice!r} twice on one GPU (its replicas go "
                                                          "to different GPUs)")
            self.calls += 1
            verdict = self._memo[key] = self._judge(key)
        return verdict

    def _twice(self, members: Sequence[int]) -> str | None:
        """The id of an adapter with two replicas among `members`, if any."""
        if not self._replicated:
            return None
        seen: set[str] = set()
        for i in members:
            if i in self._replicated:
                name = self.adapters[i].id
                if name in seen:
                    return name
                seen.add(name)
        return None

    def ok(self, members: Sequence[int]) -> bool:
        return self(members).ok

    def scaled(self, scale: float) -> ShareJudge:
        """The same judge with every rate `scale` times higher (to fill GPUs with headroom)."""
        return ShareJudge(self.check, self.profile,
                          [a.model_copy(update={"rate_req_s": a.rate_req_s * scale}) for a in self.adapters])

"""The learned models as an estimator: the per-configuration models of `loratwin.learn` (trained
on twin sweeps, loaded from JSON) predict, for each max_loras, the throughput and the probability
that the GPU starves.

The models learnt the starvation rule over an hour and do not predict waits or KV use, so those
come from the cost model: the rule then holds them to the same limits as under the cost model.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loratwin.errors import InputError
from loratwin.plan.judge.cost_model import CostModelCheck
from loratwin.plan.judge.rule import AcceptanceRule, Prediction
from loratwin.plan.judge.slots import SLOT_CANDIDATES, resolve_profile
from loratwin.plan.judge.verdict import GpuVerdict, judge_by_list, judged
from loratwin.profiles import Profile
from loratwin.workload import AdapterSpec, LengthSpec, ShareGPTLengths


@dataclass(frozen=True)
class LearnedModels:
    """loratwin.learn's per-configuration models of one profile: throughput and starvation, and
    the starvation probability `train --tune` chose as the cut (None: 0.5)."""

    throughput: dict
    starvation: dict
    source: str
    max_starved_p: float | None = None


class LearnedCheck:
    """Throughput and starvation probability from the learned models; waits, queue and KV use from
    the cost model. The rule's starvation-probability limit is the models' tuned cut when they
    have one."""

    name = "learned"
    fast = True

    def __init__(self, models: LearnedModels, lengths: LengthSpec | ShareGPTLengths | None = None,
                 rule: AcceptanceRule | None = None, slot_grid: Sequence[int] = SLOT_CANDIDATES) -> None:
        self.models = models
        self.lengths = lengths if lengths is not None else ShareGPTLengths()
        rule = rule if rule is not None else AcceptanceRule()
        if models.max_starved_p is not None:
            rule = rule.with_(max_starved_probability=models.max_starved_p)
        self.rule = rule
        self.slot_grid = tuple(slot_grid)
        self._cost_model = CostModelCheck(self.lengths, rule, slot_grid=self.slot_grid)

    @classmethod
    def for_profile(cls, profile: Profile, lengths: LengthSpec | ShareGPTLengths | None = None,
                    models_dir: str | Path | None = None, **options: object) -> LearnedCheck | None:
        """The learned check for a profile, or None when its models are missing; `options` (rule,
        slot_grid) as in the constructor."""
        models = learned_models(profile.name, models_dir)
        return None if models is None else cls(models, lengths, **options)

    def share_judge(self, adapters: Sequence[AdapterSpec], profile: Profile) -> Callable[[Sequence[int]], GpuVerdict]:
        return judge_by_list(self, adapters, resolve_profile(profile))

    def evaluate(self, adapters: Sequence[AdapterSpec], profile: Profile) -> GpuVerdict:
        from loratwin.learn.evaluators import predict_target
        from loratwin.learn.features import AdapterMix, as_matrix, config_features

        profile = resolve_profile(profile)
        m = self._cost_model.moments(profile)
        rates = np.array([a.rate_req_s for a in adapters], np.float64)
        ranks = [a.rank for a in adapters]
        served, max_rank, offered, guides, reason = self._cost_model.predict_arrays(rates, ranks, profile)
        if not guides:
            return GpuVerdict(served, max_rank, offered, (), reason)
        mix = AdapterMix(rates, np.asarray(ranks, np.float64), m.prompt, m.output_asked)
        rows = [config_features(mix, g.max_loras, max_rank) for g in guides]
        tok_s = predict_target(self.models.throughput, as_matrix(rows, self.models.throughput["features"]))
        p_starve = np.clip(predict_target(self.models.starvation, as_matrix(rows, self.models.starvation["features"])), 0.0, 1.0)
        predictions = [
            Prediction(g.max_loras, float(min(t, offered)), starved_probability=float(p), utilisation=g.utilisation,
                       slot_wait_s=g.slot_wait_s, kv_queue_s=g.kv_queue_s, kv_use=g.kv_use)
            for g, t, p in zip(guides, tok_s, p_starve)
        ]
        return judged(served, max_rank, offered, predictions, self.rule, profile)


def learned_models(profile_name: str, models_dir: str | Path | None = None) -> LearnedModels | None:
    """The per-configuration models of a profile: those loratwin.learn ships (its
    models/<profile>/manifest.json), or those in `models_dir` (a directory `loratwin train` wrote,
    or one holding a subdirectory per profile); None when missing."""
    from loratwin.learn import evaluators

    root = Path(models_dir) if models_dir is not None else Path(evaluators.__file__).parent / "models"
    directory = root if models_dir is not None and (root / "manifest.json").is_file() else root / profile_name
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        chosen = {}
        for target in ("total_tok_s", "starved"):
            family = manifest["defaults"][target]
            entry = manifest["models"][f"{target}.{family}"]
            chosen[target] = evaluators.load_model(directory / entry["file"])
        cut = manifest.get("recommend", {}).get("max_starved_p")
    except (OSError, KeyError, ValueError) as err:
        if models_dir is not None:  # the user named them: say what is wrong, and nothing else
            raise InputError(f"{manifest_path}: learned models unreadable ({err})") from None
        warnings.warn(f"{manifest_path}: learned models unreadable ({err}); using the cost-model check", stacklevel=2)
        return None
    return LearnedModels(chosen["total_tok_s"], chosen["starved"], str(directory),
                         None if cut is None else float(cut))


__all__ = ["LearnedCheck", "LearnedModels", "learned_models"]

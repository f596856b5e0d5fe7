"""The published method's answer, for comparison: the optimum models (trained on twin sweeps)
predict the best (served, max_loras) and the throughput there straight from the adapter mix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from loratwin.learn.bundle import ModelSet, load_model_set
from loratwin.learn.explain import decision_path
from loratwin.learn.features import AdapterMix, workload_features
from loratwin.profiles import Profile
from loratwin.workload import ShareGPTLengths, WorkloadSpec
from loratwin.workload.describe import expected_mean_rates

# The served and slot counts of the training grid: the optimum models' answers snap to them.
GRID_COUNTS = (16, 32, 64, 96, 128, 160, 192, 256, 320, 384)
TARGETS = ("best_served", "best_max_loras", "best_total_tok_s")


def workload_mix(workload: WorkloadSpec, profile: Profile, duration_s: float = 3600.0) -> AdapterMix:
    """Rates (averaged over the run: schedules included), ranks and mean lengths of a workload."""
    if isinstance(workload.lengths, ShareGPTLengths):
        prompt, output = workload.lengths.means(profile.tokenizer or profile.name)
    else:
        prompt, output = workload.lengths.mean_prompt_tokens, workload.lengths.mean_output_tokens
    rates = expected_mean_rates(workload, duration_s)
    ranks = np.array([a.rank for a in workload.adapters], dtype=np.float64)
    return AdapterMix(rates, ranks, prompt, output)


def published_answer(workload: WorkloadSpec, profile: Profile, models: ModelSet | str | Path | None = None,
                     family: str | None = None) -> dict[str, Any]:
    """served, max_loras and throughput by the optimum models, with the families used and the
    rule that led to the served count."""
    models = models if isinstance(models, ModelSet) else load_model_set(models if models is not None else profile.name)
    features = workload_features(workload_mix(workload, profile))
    answer: dict[str, Any] = {}
    for target in TARGETS:
        doc = models.model(target, family)
        answer[target] = float(models.predict(target, [features], family)[0])
        answer[f"{target}_family"] = doc.get("family", doc["kind"])
    n = len(workload.adapters)
    answer["served"] = min(_snap(answer["best_served"]), n)
    answer["max_loras"] = min(_snap(answer["best_max_loras"]), answer["served"])
    served_doc = models.model("best_served", family)
    answer["path"] = decision_path(served_doc, np.array([features[f] for f in served_doc["features"]], np.float64))
    answer["models"] = str(models.directory)
    answer["models_profile"] = models.profile
    return answer


def _snap(value: float) -> int:
    return int(min(GRID_COUNTS, key=lambda c: abs(c - value)))

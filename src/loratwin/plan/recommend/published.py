"""The published method's answer, for comparison: the optimum models (trained on twin sweeps)
predict the best (served, max_loras) and the throughput there straight from the adapter mix.

Models trained under latency SLOs (`loratwin train --slo`) learnt the best point under those SLOs.
When the user's SLOs differ, the answer is still given, beside the acceptance rule's (which holds
the user's SLOs), with a note saying under which SLOs its models were trained: it is a comparison,
and refusing it would hide the very difference the user may want to see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from loratwin.learn.bundle import ModelSet, load_model_set
from loratwin.learn.explain import decision_path
from loratwin.learn.features import AdapterMix, workload_features
from loratwin.profiles import Profile
from loratwin.slo import Slo, parse_slos
from loratwin.validate.ml_test import GRID_COUNTS
from loratwin.workload import ShareGPTLengths, WorkloadSpec
from loratwin.workload.describe import expected_mean_rates

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


def models_slos(models: ModelSet) -> tuple[Slo, ...]:
    """The SLOs the optimum models were trained under (none in manifests written before SLOs)."""
    where = str(models.directory / "manifest.json")
    return parse_slos(models.manifest.get("slos") or [], f"{where}: slos")


def slo_mismatch_note(trained: tuple[Slo, ...], wanted: tuple[Slo, ...]) -> str | None:
    """What to say when the optimum models were trained under other SLOs than the user's; None when the same."""
    if {(s.key, s.limit_ms) for s in trained} == {(s.key, s.limit_ms) for s in wanted}:
        return None
    under = "the SLOs " + " ".join(s.text for s in trained) if trained else "the starvation rule alone (no SLO)"
    asked = "the SLOs " + " ".join(s.text for s in wanted) if wanted else "no SLO"
    return (f"the published method's optimum models were trained under {under}, not {asked} as asked: its answer "
            "is for those; train models under yours with `loratwin train SWEEP_DIR --out MODELS"
            + "".join(f" --slo {s.text}" for s in wanted) + "` and pass --models MODELS")


def published_answer(workload: WorkloadSpec, profile: Profile, models: ModelSet | str | Path | None = None,
                     family: str | None = None, slos: tuple[Slo, ...] = ()) -> dict[str, Any]:
    """served, max_loras and throughput by the optimum models, with the families used and the
    rule that led to the served count; `models_slos`: the SLOs they were trained under, and
    `slo_note` a line when those are not `slos` (the user's), else None."""
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
    trained = models_slos(models)
    answer["models_slos"] = [s.text for s in trained]
    answer["slo_note"] = slo_mismatch_note(trained, tuple(slos))
    return answer


def _snap(value: float) -> int:
    return int(min(GRID_COUNTS, key=lambda c: abs(c - value)))

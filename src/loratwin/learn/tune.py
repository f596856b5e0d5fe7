"""Choose recommend's safety margin from twin data only.

recommend keeps the candidates whose predicted probability of starvation is below `max_starved_p`.
Here each candidate value is tried on the sweep's own workloads with out-of-fold models (grouped
by workload, as in training: a workload is never scored by a model that saw it), and the twin
says what happens at the chosen point (a stored run, or a new simulation). The loss of one
workload is its regret, 1 - throughput / the workload's best throughput, or 1 when the chosen
point starves; the value with the smallest mean loss wins. Needs the `learn` extra.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.learn.dataset import STARVATION_THRESHOLD, capacity_reference, config_table, load_sweep, profile_lengths
from loratwin.learn.features import AdapterMix
from loratwin.learn.score import candidate_counts, choose, score_candidates
from loratwin.learn.zoo import fit, group_folds, to_document

MARGINS = (0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
POOL_ADAPTERS = 384


def tune_max_starved_p(
    results_dir: str | Path,
    models_dir: str | Path,
    *,
    margins: Sequence[float] = MARGINS,
    n_folds: int = 5,
    threshold: float = STARVATION_THRESHOLD,
    workers: int | None = None,
    log: Callable[[str], None] = lambda message: None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Try each margin on the sweep's workloads; write the best into the models' manifest.
    `profile`: the profile (name or YAML path) when the manifest's name alone does not find it."""
    from loratwin.twin import ServerConfig
    from loratwin.twin.batch import SimulationTask, simulate_many
    from loratwin.twin.config import REFERENCE_CLIENT_MAX_WAITING
    from loratwin.workload import reference_layout

    models_dir = Path(models_dir)
    manifest = json.loads((models_dir / "manifest.json").read_text(encoding="utf-8"))
    profile, runs, labels = load_sweep(results_dir, profile or manifest["profile"], threshold)
    table = config_table(runs, profile, threshold)
    families = manifest["defaults"]["total_tok_s"], manifest["defaults"]["starved"]
    lengths = profile_lengths(profile)
    best = {r["workload_key"]: r for r in labels if r["best_served"] is not None and r["layout"] == "levels"}
    stored = {(r["workload_key"], r["served"], r["max_loras"]): r for r in runs if r["status"] == "ok"}

    choices: dict[float, dict[str, tuple[int, int]]] = {m: {} for m in margins}
    for test in group_folds(table.groups, n_folds):
        train = np.setdiff1d(np.arange(len(table)), test)
        capacity = capacity_reference(table.targets["total_tok_s"][train])
        ratio = table.targets["total_tok_s"][train] / np.minimum(
            table.X[train, table.features.index("offered_tok_s")], capacity)
        tp = to_document(fit(families[0], "regression", table.X[train], ratio), families[0], "regression",
                         "total_tok_s", table.features)
        tp["output"] = {"multiply_by": "offered_tok_s", "at_most": capacity}
        sp = to_document(fit(families[1], "classification", table.X[train], table.targets["starved"][train]),
                         families[1], "classification", "starved", table.features)
        for key in sorted(set(table.groups[test]) & set(best)):
            label = best[key]
            pool = AdapterMix.cycling(POOL_ADAPTERS, label["rate_levels"], label["rank_levels"], *lengths)
            candidates, _ = score_candidates(pool, profile, tp, sp, candidate_counts(POOL_ADAPTERS))
            for margin in margins:
                chosen = choose(candidates, margin) or min(candidates, key=lambda c: (c.served, c.max_loras))
                choices[margin][key] = (chosen.served, chosen.max_loras)
        log(f"margin tuning: fold done ({len(test)} rows)")

    missing = sorted({(key, s, m) for picks in choices.values() for key, (s, m) in picks.items()} - set(stored))
    log(f"margin tuning: {len(missing)} chosen points not in the sweep, simulating them")
    tasks = []
    for key, served, max_loras in missing:
        label = best[key]
        workload = reference_layout(served, label["rate_levels"], label["rank_levels"], label["seed"])
        server = ServerConfig(max_loras=max_loras, max_cpu_loras=served, max_lora_rank=max(label["rank_levels"]),
                              client_max_waiting=REFERENCE_CLIENT_MAX_WAITING)
        tasks.append(SimulationTask(workload, server, profile, duration_s=label["duration_s"], seed=label["seed"]))
    for point, result in zip(missing, simulate_many(tasks, workers=workers), strict=True):
        stored[point] = {"total_tok_s": result.summary["total_tok_s"],
                         "throughput_over_offered": result.summary["throughput_over_offered"]}

    outcomes = []
    for margin in margins:
        losses, starved = [], 0
        for key, point in choices[margin].items():
            run = stored[(key, *point)]
            if 1.0 - run["throughput_over_offered"] >= threshold:
                starved += 1
                losses.append(1.0)
            else:
                losses.append(max(0.0, 1.0 - run["total_tok_s"] / best[key]["best_total_tok_s"]))
        outcomes.append({"max_starved_p": margin, "workloads": len(losses), "starved": starved,
                         "mean_loss": float(np.mean(losses)),
                         "mean_regret_not_starved": float(np.mean([x for x in losses if x < 1.0] or [0.0]))})
    chosen = min(outcomes, key=lambda o: (round(o["mean_loss"], 6), -o["max_starved_p"]))
    manifest["recommend"] = {"max_starved_p": chosen["max_starved_p"], "tuned_on": "out-of-fold twin workloads",
                             "outcomes": outcomes, "simulated_points": len(missing)}
    (models_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return manifest["recommend"]

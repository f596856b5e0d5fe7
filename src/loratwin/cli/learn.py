"""`loratwin train` and `loratwin explain`: interpretable models of a profile, trained from a sweep and read as rules.

`train` needs the `learn` extra; `explain` runs on the core dependencies, from the JSON models.
"""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loratwin.cli.app import _parse_list, app, check_threshold
from loratwin.cli.judging import check_models_dir
from loratwin.cli.sweep import SLO_HELP
from loratwin.errors import InputError, LoratwinError
from loratwin.files import Output, check_outputs, written_whole

# user text (paths, model documents) prints literally
stdout = Console(highlight=False, soft_wrap=True, markup=False)
stderr = Console(stderr=True, highlight=False, markup=False)

TARGETS = ("best_served", "best_max_loras", "best_total_tok_s", "total_tok_s", "starved")


@app.command("train")
def train(
    results: Annotated[Path | None, typer.Argument(help="Results directory of a sweep (its labels are computed from it). Without it, --profile is swept first, into OUT/sweep.")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the models (JSON), manifest.json and comparison.md.")] = ...,
    profile: Annotated[str | None, typer.Option(help="Profile of the runs (default: the one the sweep used). Without RESULTS: the profile (built-in name or YAML) to sweep and train for.")] = None,
    families: Annotated[str | None, typer.Option(help="Model families, comma-separated: tree, figs, rulefit, ebm, linear, forest, gbm. Default: all with RESULTS, tree,figs,linear without.")] = None,
    folds: Annotated[int, typer.Option(help="Cross-validation folds (grouped by workload).")] = 5,
    threshold: Annotated[float, typer.Option(help="A run starves when 1 - throughput/offered >= this.")] = 0.1,
    slo: Annotated[list[str] | None, typer.Option("--slo", help=SLO_HELP + " The optimum models learn that point; the manifest records the SLOs.")] = None,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Choose recommend's safety margin on the sweep's workloads (simulates the points it needs).")] = True,
    workers: Annotated[int | None, typer.Option(help="Without RESULTS: parallel runs of the sweep (default: all cores).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as one JSON document on stdout.")] = False,
) -> None:
    """Train the optimum and per-configuration models of a profile from a sweep (or sweep the profile first); write them as JSON."""
    import json

    from loratwin.slo import parse_slos

    slos = parse_slos(slo)
    try:
        from loratwin.learn.train import MODEL_FILES, train_profile
        from loratwin.learn.zoo import FAMILIES
    except ImportError as err:
        raise LoratwinError(f"train needs the learn extra: pip install 'loratwin[learn]' ({err})") from None
    from loratwin.learn import from_profile

    default = FAMILIES if results is not None else from_profile.FAMILIES
    chosen = _parse_list(families if families is not None else ",".join(default), "--families", str)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown or not chosen:
        raise InputError(f"--families: unknown {', '.join(unknown) or 'empty list'} (known: {', '.join(FAMILIES)})")
    if folds < 2:
        raise InputError(f"--folds: must be >= 2, got {folds}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers: must be >= 1, got {workers}")
    check_threshold(threshold, "--threshold")
    own, carry, about = MODEL_FILES, (), None
    if results is None:
        if profile is None:
            raise InputError("give RESULTS (the --out folder of a sweep) or --profile PROFILE (swept first into OUT/sweep)")
        from loratwin.profiles import load_profile

        load_profile(profile)  # a wrong profile is said before any work
        results = out / from_profile.SWEEP_FOLDER
        own, carry = (*MODEL_FILES, from_profile.SWEEP_FOLDER), (from_profile.SWEEP_FOLDER,)
        profile_file = Path(profile)
        check_outputs(Output("--out", out, folder=True, own=own),
                      inputs=[profile_file] if profile_file.is_file() else [])
        _sweep_for_training(profile, out, results, workers)
        about = {"profile_given": profile, **from_profile.describe_sweep()}
    else:
        if not results.is_dir():
            what = "not a folder" if results.exists() else "does not exist"
            raise InputError(f"{results}: {what} (expected the --out folder of a sweep)")
        check_outputs(Output("--out", out, folder=True, own=own), inputs=[results])
    with written_whole(out, own, carry=carry) as tmp:  # the models appear together, or not at all
        manifest = train_profile(results, tmp, profile=profile, families=chosen, n_folds=folds, threshold=threshold,
                                 log=lambda message: stderr.print(message), about=about, slos=slos)
        if tune:
            from loratwin.learn.tune import tune_max_starved_p

            manifest["recommend"] = tune_max_starved_p(results, tmp, n_folds=folds, threshold=threshold,
                                                       log=lambda message: stderr.print(message), profile=profile)
    if json_out:
        print(json.dumps(manifest, indent=1, allow_nan=False))
        return
    stdout.print((Path(out) / "comparison.md").read_text(encoding="utf-8"))
    stdout.print(f"default models: {', '.join(f'{k}: {v}' for k, v in manifest['defaults'].items())}")
    if slos:
        stdout.print(f"the optimum models learn the best point that does not starve and meets {' '.join(manifest['slos'])} "
                     "(the twin's metrics)")
    if "recommend" in manifest:
        stdout.print(f"recommend keeps configurations with P(starved) < {manifest['recommend']['max_starved_p']}")
    stdout.print(f"wrote {len(manifest['models'])} models, manifest.json and comparison.md to {out}")


def _sweep_for_training(profile: str, out: Path, store: Path, workers: int | None) -> None:
    """The training sweep of a profile into `store` (resumable); an interrupt keeps the finished runs."""
    from loratwin.learn.from_profile import sweep_profile

    out.mkdir(exist_ok=True)
    state = {"what": "", "tenths": -1}

    def start(what: str) -> None:
        state.update(what=what, tenths=-1)
        stderr.print(f"sweeping {profile}: {what} into {store}", soft_wrap=True)

    def progress(p) -> None:  # a line at every tenth of the work
        tenths = 10 * p.units_done // p.units_total if p.units_total else 0
        if tenths > state["tenths"]:
            state["tenths"] = tenths
            stderr.print(f"  {p.units_done}/{p.units_total} {p.unit_name}, {p.runs_done} runs", soft_wrap=True)

    try:
        sweep_profile(profile, store, workers=workers, on_start=start, on_progress=progress,
                      on_warning=lambda line: stderr.print(f"warning: {line}", soft_wrap=True))
    except KeyboardInterrupt:
        stderr.print(f"interrupted: finished runs are stored in {store}; run the same command again to resume",
                     soft_wrap=True)
        raise typer.Exit(130) from None


@app.command("explain")
def explain(
    profile: Annotated[str, typer.Option(help="Profile whose shipped models to print.")] = "llama-3.1-8b-instruct",
    model: Annotated[str | None, typer.Option("--model", help="Model family: tree, figs, rulefit, ebm, linear, gbm (default: the profile's default per target).")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target: best_served, best_max_loras, best_total_tok_s, total_tok_s, starved.")] = None,
    models: Annotated[Path | None, typer.Option(help="A directory written by `loratwin train` instead of the shipped models.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the model documents as one JSON document on stdout.")] = False,
) -> None:
    """Print the trained models as rules a person can read."""
    import json

    if target is not None and target not in TARGETS:
        raise InputError(f"--target: unknown {target!r} (known: {', '.join(TARGETS)})")
    check_models_dir(models)
    from loratwin.learn.bundle import load_model_set
    from loratwin.learn.explain import describe_model

    model_set = load_model_set(models if models is not None else profile)
    documents = {t: model_set.model(t, model) for t in ([target] if target else TARGETS)}
    if json_out:
        print(json.dumps(documents, allow_nan=False))
        return
    stdout.print(f"models of profile {model_set.profile} ({model_set.directory})")
    for name, document in documents.items():
        stdout.print(f"\n[bold]{name}[/bold]", markup=True)
        stdout.print(describe_model(document))

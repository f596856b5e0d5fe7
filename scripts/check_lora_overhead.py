"""The profiles' step time against the LoRA-overhead calibration runs (calibration/lora_overhead.csv).

    python scripts/check_lora_overhead.py [--data ../shared/data] [--profile MODEL=NAME_OR_YAML ...]

For each model's ok restricted_adapters runs (max_loras 300, rank 8, 1-300 adapters in use, about
200 running), prints the profile's mean ITL there (step compute at the run's mean batch, prompt
tokens per step and distinct adapters, plus the measured scheduler time; see
loratwin/validate/lora_overhead.py for how each value is read or estimated) beside the measured mean
ITL, and the mean half-SMAPE, 100 * mean(|y - p| / (y + p)), over the runs. Default profiles: the
built-in ones named like the models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loratwin.profiles import load_profile
from loratwin.validate import half_smape
from loratwin.validate.lora_overhead import LORA_OVERHEAD_FILE, read_lora_overhead

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct")


def check(path: Path, model: str, profile_name: str) -> float:
    runs = read_lora_overhead(path, model)
    predicted = runs.predicted_itl_ms(load_profile(profile_name))
    print(f"\n{model} (profile {profile_name}), {len(runs)} runs")
    print(f"{'line':>5} {'in use':>6} {'adapters':>9} {'running':>7} {'prompt/step':>11} {'ITL real':>9} {'ITL profile':>11} {'ratio':>6}")
    order = sorted(range(len(runs)), key=lambda i: (runs.adapters_in_use[i], runs.lines[i]))
    for i in order:
        mark = "" if runs.adapters_logged[i] else "*"
        print(f"{runs.lines[i]:>5} {runs.adapters_in_use[i]:>6.0f} {runs.adapters[i]:>8.1f}{mark or ' '} "
              f"{runs.running[i]:>7.1f} {runs.prefill_tokens[i]:>11.1f} {runs.itl_ms[i]:>9.2f} {predicted[i]:>11.2f} "
              f"{predicted[i] / runs.itl_ms[i]:>6.2f}")
    error = half_smape(runs.itl_ms, predicted)
    print(f"{model}: mean ITL half-SMAPE {error:.2f}% over {len(runs)} runs (* adapters estimated, not logged)")
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--profile", action="append", default=[], metavar="MODEL=NAME_OR_YAML",
                        help="profile for a model (repeatable); default: the built-in one")
    args = parser.parse_args()
    chosen = {}
    for given in args.profile:
        model, _, profile = given.partition("=")
        if model not in MODELS or not profile:
            parser.error(f"--profile {given}: expected MODEL=NAME_OR_YAML with MODEL one of {', '.join(MODELS)}")
        chosen[model] = profile
    path = args.data / "calibration" / LORA_OVERHEAD_FILE
    for model in MODELS:
        check(path, model, chosen.get(model, model))


if __name__ == "__main__":
    main()

"""Start-up time of the `loratwin` command beside `python -c "import numpy"`.

Usage: python benchmarks/cli_startup.py [--rounds 15] [--script] [--env-as-is] [--json]

What is timed (wall clock of the whole process, from start to exit):
  loratwin --help   by default `sys.executable -m loratwin.cli --help`, with this checkout's src/ first
                    on PYTHONPATH, so it times the code here; with --script, the `loratwin` console script
                    found on PATH (whatever is installed there).
  import numpy      `sys.executable -c "import numpy"`: the floor for anything that computes.

The two run interleaved, round by round, so that load on the machine falls on both alike; one warm-up
round first is not counted. Both start from cached byte-code, as after `pip install` (which compiles):
the children get PYTHONPYCACHEPREFIX=<a temporary directory>, which the warm-up round fills, and
PYTHONDONTWRITEBYTECODE unset (with it set and no cache, every run would compile loratwin's modules from
source while numpy's come compiled from site-packages). --env-as-is runs them with this environment as it is.

The medians and their ratio are printed; the target is a ratio of at most 2: `--help` should cost about
what importing numpy costs, not what the simulator costs. typer and rich are most of it: importing
typer and the rich help formatter it uses alone takes about 1.6 times numpy's import.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 2.0
SRC = Path(__file__).resolve().parent.parent / "src"


def timed(command: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds of each command (default 15)")
    parser.add_argument("--script", action="store_true", help="time the `loratwin` console script on PATH")
    parser.add_argument("--env-as-is", action="store_true", help="keep this environment's byte-code settings")
    parser.add_argument("--json", action="store_true", help="print the times as one JSON document")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-startup-pycache-") as cache:
        env = dict(os.environ)
        if not args.env_as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        run(args, parser, env)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    if args.script:
        script = shutil.which("loratwin")
        if script is None:
            parser.error("--script: no `loratwin` on PATH")
        cli = [script, "--help"]
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        cli = [sys.executable, "-m", "loratwin.cli", "--help"]
    numpy = [sys.executable, "-c", "import numpy"]

    timed(cli, env), timed(numpy, env)  # warm-up
    cli_s, numpy_s = [], []
    for _ in range(args.rounds):
        cli_s.append(timed(cli, env))
        numpy_s.append(timed(numpy, env))
    cli_median, numpy_median = statistics.median(cli_s), statistics.median(numpy_s)
    ratio = cli_median / numpy_median
    if args.json:
        print(json.dumps({"command": cli, "rounds": args.rounds, "env_as_is": args.env_as_is, "cli_s": cli_s, "numpy_s": numpy_s,
                          "cli_median_s": cli_median, "numpy_median_s": numpy_median, "ratio": ratio,
                          "target_ratio": TARGET_RATIO}, indent=2))
        return
    cached = "as this environment has it" if args.env_as_is else "cached byte-code"
    print(f"{' '.join(cli)}  ({cached})")
    for name, times, median in (("loratwin --help", cli_s, cli_median), ("import numpy", numpy_s, numpy_median)):
        print(f"  {name:<16} median {1000 * median:6.1f} ms  (min {1000 * min(times):.1f}, max {1000 * max(times):.1f})")
    print(f"  ratio {ratio:.2f} over {args.rounds} interleaved rounds (target <= {TARGET_RATIO:g}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'})")


if __name__ == "__main__":
    main()

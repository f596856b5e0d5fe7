"""How long the large inputs take: a 500,000-row trace, a 100,000-row Azure trace, and placing 2,000
Zipf adapters with the cost model.

Usage: python benchmarks/input_speed.py [--repeats 3]

Each is timed `--repeats` times (wall clock, this process) and the median printed beside its
target: trace load under 3 s, Azure trace load under 2 s, placement under 10 s (about 0.3 s on a
laptop core). These are targets for a machine of its own; a shared one reads slower.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS_S = {"trace, 500,000 rows": 3.0, "Azure trace, 100,000 rows": 2.0, "place 2,000 Zipf adapters": 10.0}


def write_trace(directory: Path, rows: int) -> Path:
    from loratwin.workload.trace import TRACE_HEADER

    directory.mkdir()
    times = np.arange(rows) * 0.002
    lines = [f"{t!r},lora-{i % 7},{100 + i % 50},{20 + i % 30}" for i, t in enumerate(times.tolist())]
    (directory / "trace.csv").write_text("\n".join([",".join(TRACE_HEADER), *lines]) + "\n")
    (directory / "adapters.csv").write_text("adapter_id,rank\n" + "".join(f"lora-{i},8\n" for i in range(7)))
    return directory


def write_azure(path: Path, rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-11-16T18:00:00", "ns")
    stamps = start + np.cumsum(rng.exponential(0.1, rows) * 1e9).astype("timedelta64[ns]")
    lines = [f"{str(s).replace('T', ' ')[:27]},{p},{o}"
             for s, p, o in zip(stamps, rng.integers(1, 4000, rows), rng.integers(0, 800, rows), strict=True)]
    path.write_text("\n".join(["TIMESTAMP,ContextTokens,GeneratedTokens", *lines]) + "\n")
    return path


def timed(job) -> float:
    started = time.perf_counter()
    job()
    return time.perf_counter() - started


def main() -> None:
    from loratwin.plan.judge import CostModelCheck
    from loratwin.plan.placement import place
    from loratwin.profiles import load_profile
    from loratwin.workload import load_azure_trace, load_trace, zipf_layout

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    profile = load_profile("llama-3.1-8b-instruct")
    workload = zipf_layout(2000, 150.0, 1.0, ranks=(8, 16, 32), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        trace = write_trace(Path(tmp) / "trace", 500_000)
        azure = write_azure(Path(tmp) / "azure.csv", 100_000)
        jobs = {"trace, 500,000 rows": lambda: load_trace(trace),
                "Azure trace, 100,000 rows": lambda: load_azure_trace(azure, 128, "zipf"),
                "place 2,000 Zipf adapters": lambda: place(workload, profile, check=CostModelCheck())}
        for name, job in jobs.items():
            seconds = [timed(job) for _ in range(args.repeats)]
            median = statistics.median(seconds)
            print(f"{name}: median {median:.2f} s of {args.repeats} (target < {TARGETS_S[name]:g} s: "
                  f"{'met' if median < TARGETS_S[name] else 'MISSED'}); runs " + ", ".join(f"{s:.2f}" for s in seconds))


if __name__ == "__main__":
    main()

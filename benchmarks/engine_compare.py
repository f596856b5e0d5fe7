"""Side by side: the compiled engine of another engine.py (e.g. an older commit's) against this one, on
the three twin_speed.py scenarios; checks that both give the same output and prints each engine
call's median time (interleaved repeats, one process).

Usage: git show main:src/loratwin/twin/engine.py > /tmp/old/engine_old.py
       python benchmarks/engine_compare.py /tmp/old/engine_old.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the other engine.py")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location(args.old.stem, args.old)
    old = importlib.util.module_from_spec(spec)
    sys.modules[args.old.stem] = old
    spec.loader.exec_module(old)
    sys.path.insert(0, str(Path(__file__).parent))
    from twin_speed import SCENARIOS

    from loratwin import ServerConfig, reference_layout, simulate
    from loratwin.twin import engine, simulation

    captured = {}
    real = simulation._run_engine

    def spy(inputs, *rest, **kw):
        captured["inputs"] = inputs
        return real(inputs, *rest, **kw)

    simulation._run_engine = spy
    for name, (served, rates, ranks, max_loras, _) in SCENARIOS.items():
        workload = reference_layout(served, rates, ranks, seed=0)
        simulate(workload, ServerConfig(max_loras=max_loras, client_max_waiting=25_500), "llama-3.1-8b-instruct",
                 duration_s=3600, seed=0)
        inputs = captured["inputs"]
        caps = tuple(simulation.log_caps(simulation.load_profile("llama-3.1-8b-instruct"), 3600.0,
                                         len(inputs.arrival_ns), inputs.max_num_seqs).values())
        a, b = old.run_engine(*inputs, *caps), engine.run_engine(*inputs, *caps)
        same = all((x == y).all() for x, y in zip(a, b))
        times_old, times_new = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            old.run_engine(*inputs, *caps)
            times_old.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            engine.run_engine(*inputs, *caps)
            times_new.append(time.perf_counter() - t0)
        m_old, m_new = statistics.median(times_old), statistics.median(times_new)
        print(f"{name:6} other {m_old * 1000:7.1f} ms  this {m_new * 1000:7.1f} ms  ratio {m_new / m_old:.3f}  "
              f"same output: {same}", flush=True)


if __name__ == "__main__":
    main()

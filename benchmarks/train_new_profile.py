"""Time `loratwin train --profile P --out DIR` from nothing (sweep, training, tuning), and compare its
models' cross-validated figures with those of the built-in models of the same profile.

    nice python benchmarks/train_new_profile.py [--profile llama-3.1-8b-instruct] [--out DIR] [--workers 2]

Target: at most 20 minutes on a 2-core machine. The profile defaults to a built-in one, so that its
shipped models (trained on the larger sweep of scripts/train_models.py, with all families) are there
to compare with; any profile YAML works the same. The figures compared are each training's grouped
cross-validation on its own sweep (loratwin.learn.train): the same targets and families, not the same
rows. DIR is removed first unless --resume.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 20 * 60


class TreeCpu:
    """CPU seconds of a process and all its descendants (the sweep's workers are the forkserver's
    children, not the command's), sampled from /proc every second: each process's last sample."""

    def __init__(self, pid: int) -> None:
        self.pid, self.seen, self.done = pid, {}, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.wait(1.0):
            self.sample()

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        times: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            children.setdefault(int(fields[1]), []).append(pid)
            times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        todo = [self.pid]
        while todo:
            pid = todo.pop()
            if pid in times:
                self.seen[pid] = max(self.seen.get(pid, 0.0), times[pid])
            todo.extend(children.get(pid, []))

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


def rows(manifest: dict) -> dict[tuple[str, str], dict]:
    return {(r["target"], r["family"]): r for table in manifest["comparison"].values() for r in table}


def figure(row: dict | None) -> str:
    if row is None:
        return "-"
    if row.get("macro_f1") is not None:
        return f"F1 {row['macro_f1']:.3f}"
    snapped = row.get("error_pct_snapped")
    return f"{row['error_pct']:.1f}%" + (f" ({snapped:.1f}% snapped)" if snapped is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="llama-3.1-8b-instruct")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "train-new-profile")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep DIR (a rerun resumes its sweep)")
    args = parser.parse_args()
    if args.out.exists() and not args.resume:
        shutil.rmtree(args.out)
    command = [sys.executable, "-m", "loratwin.cli", "train", "--profile", args.profile, "--out", str(args.out),
               "--workers", str(args.workers), "--json"]
    print("$ loratwin " + " ".join(command[3:]), flush=True)
    started = time.monotonic()
    sweep_done, sweep_cpu = None, 0.0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}) as proc:
        cpu = TreeCpu(proc.pid)
        for line in proc.stderr:
            if sweep_done is None and ": cross-validating on" in line:
                cpu.sample()
                sweep_done, sweep_cpu = time.monotonic() - started, cpu.seconds
            print(f"  [{time.monotonic() - started:6.0f} s] {line.rstrip()}", flush=True)
        stdout = proc.stdout.read()
    total = time.monotonic() - started
    cpu.done.set()
    cpu_s = cpu.seconds
    if proc.returncode != 0:
        sys.exit(f"train failed ({proc.returncode})")
    manifest = json.loads(stdout)
    sweep_s = sweep_done or 0.0
    print(f"wall time: sweep {sweep_s:.0f} s, training and tuning {total - sweep_s:.0f} s, total {total:.0f} s "
          f"({total / 60:.1f} min; target <= {TARGET_S // 60} min: {'met' if total <= TARGET_S else 'missed'})")
    # On a shared machine the wall time counts the others' load too. On 2 free cores: the sweep's CPU
    # time over its 2 workers, the training's (one process) as it is.
    free = sweep_cpu / 2 + (cpu_s - sweep_cpu)
    print(f"CPU time: sweep {sweep_cpu:.0f} s, training and tuning {cpu_s - sweep_cpu:.0f} s; on 2 free cores about "
          f"{free / 60:.1f} min (target <= {TARGET_S // 60} min: {'met' if free <= TARGET_S else 'missed'})")
    print(f"training data: {manifest['training']['runs']} runs of {manifest['training']['workloads']} workloads")

    shipped = ROOT / "src" / "loratwin" / "learn" / "models" / manifest["profile"] / "manifest.json"
    if not shipped.is_file():
        print(f"no built-in models of profile {manifest['profile']} to compare with")
        return
    built_in = json.loads(shipped.read_text())
    ours, theirs = rows(manifest), rows(built_in)
    print(f"cross-validated figures, this training vs the built-in models of {manifest['profile']} "
          f"({built_in['training']['runs']} runs of {built_in['training']['workloads']} workloads):")
    for key in sorted(ours):
        print(f"  {key[0]:>16} / {key[1]:<6}  {figure(ours[key]):>26}   built-in {figure(theirs.get(key))}")
    print("  each target's default model, this training vs built-in:")
    for target, family in manifest["defaults"].items():
        theirs_family = built_in["defaults"][target]
        print(f"  {target:>16}  {family:<6} {figure(ours[(target, family)]):>26}   built-in {theirs_family:<7} "
              f"{figure(theirs.get((target, theirs_family)))}")
    print(f"  recommend's P(starved) cut: {manifest.get('recommend', {}).get('max_starved_p')}, "
          f"built-in {built_in.get('recommend', {}).get('max_starved_p')}")


if __name__ == "__main__":
    main()

"""Bad input over every command, one row per case: bad flag values, missing files, folders where files
are expected and files where folders are, output places that are missing, unwritable or taken by the
user's files, malformed CSV and YAML.

Each case runs `loratwin` in-process (`loratwin.cli.main`, as the console script does, so that its error
printer is part of what is tested) in a fresh workspace of small files, and asserts: exit status 2;
exactly one line on stderr, `error: ...`, that names the offending flag, file or folder (and prints
square brackets as they were typed); nothing on stdout; no traceback; and the workspace byte for byte as
it was, so nothing was half-written and no file the user had was touched. A few cases run in a real
process, and writes that fail midway are checked to leave nothing behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from .inprocess import run_main

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
SIM = ("simulate", "--served", "4", "--rates", "0.4,0.2", "--ranks", "8,16", "--max-loras", "2", "--duration", "60")
ADAPTERS_CSV = "adapter_id,rank,rate\na,8,0.5\nb,16,0.2\n"
GRID = "name: tiny\nduration_s: 60\nserved: [8, 16]\nmax_loras: [8]\nrates: [[0.8, 0.4, 0.2]]\nranks: [[8, 16]]\n"
# a lab's runs table, as `loratwin profile import` writes it (one run)
LAB_HEADER = ("run_id,source_set,model,max_loras,served_adapters,max_lora_rank,adapter_rank_cycle,rate_values,"
              "rate_counts,status,total_tok_s,mean_itl_ms")
LAB_ROW = "a,lab,llama-3.1-8b-instruct,2,4,16,8 16,0.1 0.2,2 2,ok,100,20"
FIT = ("profile", "fit", "lab.csv", "--model", "llama-3.1-8b-instruct", "--gpu", "h100-64gb", "--start",
       "llama-3.1-8b-instruct")
# what the user has in the folder the commands run in; outputs that should not appear are absent
WORKSPACE: dict[str, str | bytes] = {
    "adapters.csv": ADAPTERS_CSV,
    "dir[x]/a[b].csv": ADAPTERS_CSV,
    "workload.yaml": "adapters:\n  - {id: a, rank: 8, rate_req_s: 0.5}\n  - {id: b, rank: 16, rate_req_s: 0.2}\n",
    "grid.yaml": GRID,
    "grid-changed.yaml": GRID.replace("duration_s: 60", "duration_s: 30"),
    "trace/trace.csv": "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.5,a,10,20\n",
    "trace/adapters.csv": "adapter_id,rank\na,8\n",
    "badtrace/trace.csv": "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.5,a,10,x\n",
    "badtrace/adapters.csv": "adapter_id,rank\na,8\n",
    "bad.yaml": "adapters: [\n  - {id: a\n",
    "bad.csv": "adapter_id,rank,rate\na,eight,0.5\n",
    "dup.csv": "adapter_id,rank,rate\n[red]a,8,0.5\n[red]a,16,0.2\n",
    "binary.bin": bytes(range(128, 256)) * 4,
    "brokenrun/summary.json": "{garbage",
    "brokenrun/requests.parquet": "not parquet",
    "brokenrun/timeseries.parquet": "not parquet",
    "afile": "a file the user had\n",
    "existing/notes.txt": "the user's notes\n",
    "placement.yaml": "gpus: []\nnote: the user's placement\n",
    "serve.sh": "#!/bin/sh\necho the user's command\n",
    "profile.yaml": "# the user's profile\n",
    "dir.yaml/keep.txt": "a folder named like a file\n",
    "models/keep.txt": "a folder without manifest.json\n",
    "lab-nocols.csv": LAB_HEADER.replace(",total_tok_s,mean_itl_ms", "") + "\n" + LAB_ROW.rsplit(",", 2)[0] + "\n",
    "lab-qwen.csv": LAB_HEADER + "\n" + LAB_ROW.replace("llama-3.1-8b-instruct", "qwen-2.5-7b-instruct") + "\n",
    "lab-failed.csv": LAB_HEADER + "\n" + LAB_ROW.replace(",ok,", ",oom_at_start,").replace(",100,20", ",,") + "\n",
    "lab.csv": LAB_HEADER + "\n" + LAB_ROW + "\n",
    "labrun/server.log": (Path(__file__).resolve().parents[1] / "fixtures" / "lab" / "run-ok" / "server.log").read_text(),
    "labrun/client-0.json": '{"model_id": "meta-llama/Llama-3.1-8B-Instruct", "duration": 30}',
}


def case(names: str, *args: str, id: str | None = None):
    """One bad input: the command line, and what its one error line must contain."""
    return pytest.param(args, names, id=id or " ".join(args))


CASES = [
    # simulate: output places
    case("--out missing/x: the folder missing does not exist", *SIM, "--out", "missing/x"),
    case("--out afile: is a file; expected a folder", *SIM, "--out", "afile"),
    case("--out existing: the folder holds notes.txt", *SIM, "--out", "existing"),
    case("--out .: name a folder", *SIM, "--out", "."),
    case("--out {unwritable}/run: cannot write in {unwritable}", *SIM, "--out", "{unwritable}/run"),
    case("--report afile: is a file; expected a folder", *SIM, "--report", "afile"),
    case("--report missing/r: the folder missing does not exist", *SIM, "--report", "missing/r"),
    case("--report run: the same place as --out", *SIM, "--out", "run", "--report", "run"),
    case("--report run/report: inside the folder of --out", *SIM, "--out", "run", "--report", "run/report"),
    case("--out adapters.csv/x: adapters.csv is not a folder", *SIM, "--out", "adapters.csv/x"),
    # simulate: flags
    case("--starvation-threshold: must be between 0 and 1, got 2", *SIM, "--starvation-threshold", "2"),
    case("--starvation-threshold: must be between 0 and 1, got 0", *SIM, "--starvation-threshold", "0"),
    case("--starvation-threshold: must be between 0 and 1, got -0.5", *SIM, "--starvation-threshold", "-0.5"),
    case("--duration must be a positive number of seconds, got -1", *SIM, "--duration", "-1"),
    case("--sample-interval must be a positive number", *SIM, "--sample-interval", "0"),
    case("--seeds", *SIM, "--seeds", "0"),
    case("--report reports on one run", *SIM, "--seeds", "2", "--report", "r"),
    case("--engine: unknown 'turbo'", *SIM, "--engine", "turbo"),
    case("--max-loras: Input should be greater than or equal to 1", *SIM, "--max-loras", "0"),
    case("'--max-loras'", "simulate", "--served", "4", "--rates", "0.1", "--ranks", "8", "--max-loras", "x"),
    case("--rates: 'x' is not a number", "simulate", "--served", "4", "--rates", "x", "--ranks", "8", "--max-loras", "2"),
    case("No such option: --bogus", *SIM, "--bogus"),
    case("give exactly one workload", "simulate", "--max-loras", "2"),
    # simulate: input files
    case("bad.yaml: line 2, column 3: invalid YAML", "simulate", "--workload", "bad.yaml", "--max-loras", "2"),
    case("dir[x]/missing[y].yaml does not exist", "simulate", "--workload", "dir[x]/missing[y].yaml",
         "--max-loras", "2"),
    case("existing is a folder", "simulate", "--workload", "existing", "--max-loras", "2"),
    case("afile: trace directory not found", "simulate", "--trace", "afile", "--max-loras", "2"),
    case("badtrace/trace.csv line 2: output_tokens must be an integer", "simulate", "--trace", "badtrace",
         "--max-loras", "2"),
    case("binary.bin: not a text file", *SIM, "--profile", "binary.bin"),
    case("existing is a folder; expected a profile YAML file", *SIM, "--profile", "existing"),
    case("unknown profile 'nope'", *SIM, "--profile", "nope"),
    # report
    case("missing does not exist", "report", "missing", "--out", "r"),
    case("afile holds no result loratwin can report on", "report", "afile", "--out", "r"),
    case("bad.yaml holds no result loratwin can report on", "report", "bad.yaml", "--out", "r"),
    case("brokenrun: cannot read the simulation result", "report", "brokenrun", "--out", "r"),
    case("--out missing/r: the folder missing does not exist", "report", "placement.yaml", "--out", "missing/r"),
    case("--out afile: is a file; expected a folder", "report", "placement.yaml", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "report", "placement.yaml", "--out", "existing"),
    case("--out brokenrun: the folder holds requests.parquet, summary.json, timeseries.parquet", "report",
         "brokenrun", "--out", "brokenrun"),
    case("Missing option '--out'", "report", "placement.yaml"),
    # workload describe
    case("missing.yaml does not exist", "workload", "describe", "missing.yaml"),
    case("bad.yaml: line 2, column 3: invalid YAML", "workload", "describe", "bad.yaml"),
    case("binary.bin: not a text file", "workload", "describe", "binary.bin"),
    case("--duration must be a positive number of seconds, got -1", "workload", "describe", "workload.yaml",
         "--duration", "-1"),
    case("existing/adapters.csv: adapters file not found", "workload", "describe", "existing"),
    # profiles
    case("No such option: --bogus", "profiles", "--bogus"),
    case("unexpected extra argument", "profiles", "extra"),
    # validate (the runs file's own checks are tested with validate)
    case("--out missing/v: the folder missing does not exist", "validate", "bad.csv", "--out", "missing/v"),
    case("--out existing: the folder holds notes.txt", "validate", "bad.csv", "--out", "existing"),
    case("--report afile: is a file; expected a folder", "validate", "bad.csv", "--report", "afile"),
    case("--report out: the same place as --out", "validate", "bad.csv", "--out", "out", "--report", "out"),
    case("--seeds", "validate", "bad.csv", "--seeds", "0"),
    case("missing.csv does not exist", "validate", "missing.csv"),
    case("bad.csv: missing columns", "validate", "bad.csv"),
    # calibrate
    case("--out missing/p.yaml: the folder missing does not exist", "calibrate", "--model", "m",
         "--calibration-dir", "existing", "--out", "missing/p.yaml"),
    case("--out p.txt: expected a .yaml file name", "calibrate", "--model", "m", "--calibration-dir", "existing",
         "--out", "p.txt"),
    case("--out dir.yaml: is a folder; expected a file name", "calibrate", "--model", "m", "--calibration-dir",
         "existing", "--out", "dir.yaml"),
    case("--rounds must be >= 1, got 0", "calibrate", "--model", "m", "--calibration-dir", "existing", "--out",
         "profile.yaml", "--rounds", "0"),
    case("--calibration-dir missing: does not exist", "calibrate", "--model", "m", "--calibration-dir", "missing",
         "--out", "profile.yaml"),
    case("--calibration-dir afile: is not a folder", "calibrate", "--model", "m", "--calibration-dir", "afile",
         "--out", "profile.yaml"),
    case("existing/decode_latency.csv does not exist", "calibrate", "--model", "m",
         "--calibration-dir", "existing", "--out", "profile.yaml"),
    case("bad.csv: missing columns", "calibrate", "--model", "m", "--calibration-dir", "existing", "--out",
         "profile.yaml", "--runs", "bad.csv"),
    case("Missing option '--model'", "calibrate", "--calibration-dir", "existing", "--out", "profile.yaml"),
    # sweep
    case("missing.yaml: no such grid file", "sweep", "missing.yaml", "--out", "s"),
    case("bad.yaml: line 2, column 3: invalid YAML", "sweep", "bad.yaml", "--out", "s"),
    case("binary.bin: not a text file", "sweep", "binary.bin", "--out", "s"),
    case("existing is a folder; expected a grid YAML file", "sweep", "existing", "--out", "s"),
    case("--out afile: is a file; expected a folder", "sweep", "grid.yaml", "--out", "afile"),
    case("--out missing/s: the folder missing does not exist", "sweep", "grid.yaml", "--out", "missing/s"),
    case("--report afile: is a file; expected a folder", "sweep", "grid.yaml", "--out", "s", "--report", "afile"),
    case("--workloads 5:2 selects none of the grid's 1 workloads", "sweep", "grid.yaml", "--out", "s",
         "--workloads", "5:2"),
    case("--workloads: expected START:STOP[:STEP]", "sweep", "grid.yaml", "--out", "s", "--workloads", "a:b"),
    case("--threshold: must be between 0 and 1, got 2", "sweep", "grid.yaml", "--out", "s", "--threshold", "2"),
    case("--max-configs: must be >= 1, got 0", "sweep", "grid.yaml", "--out", "s", "--max-configs", "0"),
    case("--backend: expected one of local, ray", "sweep", "grid.yaml", "--out", "s", "--backend", "slurm"),
    case("--workers: must be >= 1, got 0", "sweep", "grid.yaml", "--out", "s", "--workers", "0"),
    case("store holds results of another grid", "sweep", "grid-changed.yaml", "--out", "store"),
    # labels
    case("missing: does not exist", "labels", "missing"),
    case("afile: not a folder", "labels", "afile"),
    case("existing: not a sweep results directory", "labels", "existing", "--out", "labels-out"),
    case("--out missing/l: the folder missing does not exist", "labels", "store", "--out", "missing/l"),
    case("--out afile: is a file; expected a folder", "labels", "store", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "labels", "store", "--out", "existing"),
    case("--threshold: must be between 0 and 1, got 1", "labels", "store", "--threshold", "1"),
    # train
    case("--out missing/m: the folder missing does not exist", "train", "store", "--out", "missing/m"),
    case("--out afile: is a file; expected a folder", "train", "store", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "train", "store", "--out", "existing"),
    case("--folds: must be >= 2, got 1", "train", "store", "--out", "m", "--folds", "1"),
    case("--families: unknown nope", "train", "store", "--out", "m", "--families", "nope"),
    case("--threshold: must be between 0 and 1, got 0", "train", "store", "--out", "m", "--threshold", "0"),
    case("missing: does not exist", "train", "missing", "--out", "m"),
    case("store: too few workloads with a known optimum", "train", "store", "--out", "m", "--no-tune"),
    case("give RESULTS (the --out folder of a sweep) or --profile PROFILE", "train", "--out", "m"),
    case("unknown profile 'nope'", "train", "--profile", "nope", "--out", "m"),
    case("profile.yaml: expected a mapping of profile fields", "train", "--profile", "profile.yaml", "--out", "m"),
    case("--workers: must be >= 1, got 0", "train", "--profile", "llama-3.1-8b-instruct", "--out", "m", "--workers", "0"),
    case("--out existing: the folder holds notes.txt", "train", "--profile", "llama-3.1-8b-instruct", "--out",
         "existing"),
    case("--out afile: is a file; expected a folder", "train", "--profile", "llama-3.1-8b-instruct", "--out", "afile"),
    # explain
    case("--target: unknown 'nope'", "explain", "--target", "nope"),
    case("--model: no 'nope' model", "explain", "--model", "nope"),
    case("--models missing: does not exist", "explain", "--models", "missing"),
    case("--models afile: is not a folder", "explain", "--models", "afile"),
    case("--models models: no manifest.json there", "explain", "--models", "models"),
    # recommend
    case("missing.csv does not exist", "recommend", "missing.csv"),
    case("bad.csv line 2: rank must be an integer > 0, got 'eight'", "recommend", "bad.csv"),
    case("dup.csv line 3: duplicate adapter_id '[red]a'", "recommend", "dup.csv"),
    case("binary.bin: expected a .csv", "recommend", "binary.bin"),
    case("--command-out missing/cmd.sh: the folder missing does not exist", "recommend", "adapters.csv",
         "--command-out", "missing/cmd.sh"),
    case("--command-out dir[x]/no[y]/cmd.sh: the folder dir[x]/no[y] does not exist", "recommend", "dir[x]/a[b].csv",
         "--command-out", "dir[x]/no[y]/cmd.sh"),
    case("--command-out existing: is a folder; expected a file name", "recommend", "adapters.csv",
         "--command-out", "existing"),
    case("--command-out adapters.csv: is an input of this command", "recommend", "adapters.csv",
         "--command-out", "adapters.csv"),
    case("--report afile: is a file; expected a folder", "recommend", "adapters.csv", "--report", "afile"),
    case("--window must be a positive number of seconds, got -1", "recommend", "adapters.csv", "--window", "-1",
         "--verify"),
    case("--window must be a positive number of seconds, got 0", "recommend", "adapters.csv", "--duration", "0",
         "--refine"),
    case("--seed must be >= 0, got -1", "recommend", "adapters.csv", "--seed", "-1", "--verify",
         "--command-out", "serve.sh"),
    case("--starvation-threshold: must be between 0 and 1, got 1.5", "recommend", "adapters.csv", "--starvation-threshold",
         "1.5"),
    case("--max-wait must be > 0 seconds", "recommend", "adapters.csv", "--max-wait", "-5"),
    case("--check must be one of", "recommend", "adapters.csv", "--check", "oracle"),
    case("--models missing: does not exist", "recommend", "adapters.csv", "--models", "missing"),
    case("Option '--verify' does not take a value", "recommend", "adapters.csv", "--verify=yes"),
    # quickstart
    case("No such option: --bogus", "quickstart", "--bogus"),
    case("unexpected extra argument", "quickstart", "extra"),
    case("Option '--check' does not take a value", "quickstart", "--check=x"),
    # place
    case("missing.csv does not exist", "place", "missing.csv"),
    case("bad.csv line 2: rank must be an integer > 0", "place", "bad.csv"),
    case("--out missing/p.yaml: the folder missing does not exist", "place", "adapters.csv", "--out",
         "missing/p.yaml"),
    case("--out p.txt: expected a .yaml or .json file name", "place", "adapters.csv", "--out", "p.txt"),
    case("--out dir.yaml: is a folder; expected a file name", "place", "adapters.csv", "--out", "dir.yaml"),
    case("--out workload.yaml: is an input of this command", "place", "workload.yaml", "--out", "workload.yaml"),
    case("--out {unwritable}/p.yaml: cannot write in {unwritable}", "place", "adapters.csv", "--out",
         "{unwritable}/p.yaml"),
    case("--report afile: is a file; expected a folder", "place", "adapters.csv", "--report", "afile"),
    case("--gpus must be >= 1, got 0", "place", "adapters.csv", "--gpus", "0", "--out", "placement.yaml"),
    case("--search-moves must be >= 0", "place", "adapters.csv", "--search-moves", "-1"),
    case("--algorithm must be one of", "place", "adapters.csv", "--algorithm", "best"),
    case("--window must be a positive number of seconds, got 0", "place", "adapters.csv", "--verify",
         "--window", "0", "--out", "placement.yaml"),
    case("--starvation-threshold: must be between 0 and 1, got 2", "place", "adapters.csv", "--starvation-threshold", "2"),
    case("--models afile: is not a folder", "place", "adapters.csv", "--models", "afile"),
    # profile fit
    case("lab-nocols.csv: missing columns total_tok_s, mean_itl_ms", *FIT[:2], "lab-nocols.csv", *FIT[3:],
         "--out", "p.yaml"),
    case("lab-qwen.csv: no runs of model 'meta-llama/Llama-3.1-8B-Instruct' (it holds runs of qwen-2.5-7b-instruct)",
         *FIT[:2], "lab-qwen.csv", *FIT[3:], "--out", "p.yaml"),
    case("lab-failed.csv: none of the 1 runs of model 'meta-llama/Llama-3.1-8B-Instruct' can be fitted on", *FIT[:2],
         "lab-failed.csv", *FIT[3:], "--out", "p.yaml"),
    case("missing.csv does not exist", *FIT[:2], "missing.csv", *FIT[3:], "--out", "p.yaml"),
    case("bad.csv: missing columns", *FIT[:2], "bad.csv", *FIT[3:], "--out", "p.yaml"),
    case("--out p.txt: expected a .yaml file name", *FIT, "--out", "p.txt"),
    case("--out missing/p.yaml: the folder missing does not exist", *FIT, "--out", "missing/p.yaml"),
    case("--out lab.csv: expected a .yaml file name", *FIT, "--out", "lab.csv"),
    case("--out profile.yaml: is an input of this command", *FIT[:2], "profile.yaml", *FIT[3:], "--out",
         "profile.yaml"),
    case("--gpu-memory-utilization: must be in (0, 1], got 1.5", *FIT, "--out", "p.yaml",
         "--gpu-memory-utilization", "1.5"),
    case("--max-num-batched-tokens (512) must be >= --max-num-seqs (1024)", *FIT, "--out", "p.yaml",
         "--max-num-seqs", "1024", "--max-num-batched-tokens", "512"),
    case("--max-model-len: must be >= 1, got 0", *FIT, "--out", "p.yaml", "--max-model-len", "0"),
    case("--rounds: must be >= 1, got 0", *FIT, "--out", "p.yaml", "--rounds", "0"),
    case("--model: unknown model 'nope'", *FIT[:4], "nope", *FIT[5:], "--out", "p.yaml"),
    case("--gpu: unknown GPU 'nope'", *FIT[:6], "nope", *FIT[7:], "--out", "p.yaml"),
    case("unknown profile 'nope'", *FIT[:8], "nope", "--out", "p.yaml"),
    case("Missing option '--out'", *FIT),
    # simulate --bench-json
    case("--bench-json existing: is a folder; expected a file name", *SIM, "--bench-json", "existing"),
    case("--bench-json missing/b.json: the folder missing does not exist", *SIM, "--bench-json", "missing/b.json"),
    case("--bench-json writes one run: use it without --seeds", *SIM, "--seeds", "2", "--bench-json", "b.json"),
    case("--bench-json workload.yaml: is an input of this command", "simulate", "--workload", "workload.yaml",
         "--max-loras", "2", "--bench-json", "workload.yaml"),
    # profile plan
    case("--gpu: unknown GPU 'nope'", "profile", "plan", "--model", LLAMA, "--gpu", "nope"),
    case("--model: unknown model 'nope'", "profile", "plan", "--model", "nope", "--gpu", "h100-80gb"),
    case("--gpu-memory-utilization: must be in (0, 1], got 1.5", "profile", "plan", "--model", LLAMA, "--gpu",
         "h100-80gb", "--gpu-memory-utilization", "1.5"),
    case("--max-model-len: must be at least 2048", "profile", "plan", "--model", LLAMA, "--gpu", "h100-80gb",
         "--max-model-len", "512"),
    case("--model Qwen/Qwen2.5-14B-Instruct: its weights (27.5 GiB) do not fit", "profile", "plan", "--model",
         "Qwen/Qwen2.5-14B-Instruct", "--gpu", "l4"),
    case("bad.yaml: line 2, column 3: invalid YAML", "profile", "plan", "--model", LLAMA, "--gpu", "bad.yaml"),
    case("Missing option '--gpu'", "profile", "plan", "--model", LLAMA),
    # profile make-adapters
    case("--rank must be from 1 to 512", "profile", "make-adapters", "--model", LLAMA, "--rank", "0", "--count", "1",
         "--out", "ad"),
    case("--count must be from 1 to 10,000, got 0", "profile", "make-adapters", "--model", LLAMA, "--rank", "8",
         "--count", "0", "--out", "ad"),
    case("--out existing: the folder holds notes.txt", "profile", "make-adapters", "--model", LLAMA, "--rank", "8",
         "--count", "1", "--out", "existing"),
    case("--out afile: is a file; expected a folder", "profile", "make-adapters", "--model", LLAMA, "--rank", "8",
         "--count", "1", "--out", "afile"),
    case("--out missing/ad: the folder missing does not exist", "profile", "make-adapters", "--model", LLAMA,
         "--rank", "8", "--count", "1", "--out", "missing/ad"),
    case("--model: unknown model 'nope'", "profile", "make-adapters", "--model", "nope", "--rank", "8", "--count",
         "1", "--out", "ad"),
    # profile import
    case("missing: does not exist; expected a run's folder", "profile", "import", "missing", "--out", "runs.csv"),
    case("afile: is not a folder", "profile", "import", "afile", "--out", "runs.csv"),
    case("existing/server.log does not exist", "profile", "import", "existing", "--out", "runs.csv"),
    case("labrun/client-0.json: missing keys num_prompts, request_rate, completed", "profile", "import", "labrun",
         "--out", "runs.csv"),
    case("--out runs.txt: expected a .csv file name", "profile", "import", "labrun", "--out", "runs.txt"),
    case("--out missing/runs.csv: the folder missing does not exist", "profile", "import", "labrun", "--out",
         "missing/runs.csv"),
    case("--kv-out runs.csv: the same place as --out", "profile", "import", "labrun", "--out", "runs.csv",
         "--kv-out", "runs.csv"),
    case("Missing option '--out'", "profile", "import", "labrun"),
]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under `root`."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory) -> Path:
    """A finished two-run sweep of GRID, made once and copied into each workspace."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "grid.yaml").write_text(GRID)
    code, _, err = run_main(["sweep", str(root / "grid.yaml"), "--out", str(root / "store"), "--workers", "1"])
    assert code == 0, err
    return root / "store"


@pytest.fixture
def workspace(tmp_path, sweep_store, monkeypatch) -> Path:
    root = tmp_path / "ws"
    for name, content in WORKSPACE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    shutil.copytree(sweep_store, root / "store")
    monkeypatch.chdir(root)
    return root


@pytest.fixture(scope="module")
def unwritable() -> str:
    """A folder this process cannot create files in: a read-only one, or /sys where the tests run as root."""
    if os.geteuid() != 0:
        folder = tempfile.mkdtemp()
        os.chmod(folder, 0o500)
        yield folder
        os.chmod(folder, 0o700)
        shutil.rmtree(folder)
        return
    try:
        tempfile.NamedTemporaryFile(dir="/sys").close()
    except OSError:
        yield "/sys"
        return
    pytest.skip("no unwritable folder here")


def _command(args: tuple[str, ...]) -> str:
    return " ".join(args[:2]) if args[0] in ("workload", "profile") else args[0]


def test_every_command_has_bad_input_cases():
    counts = Counter(_command(p.values[0]) for p in CASES)
    commands = {"simulate", "report", "workload describe", "profiles", "validate", "calibrate", "sweep", "labels",
                "train", "explain", "recommend", "quickstart", "place", "profile plan", "profile make-adapters",
                "profile import", "profile fit"}
    assert set(counts) == commands, commands - set(counts)
    assert len(CASES) >= 60


@pytest.mark.parametrize(("args", "names"), CASES)
def test_bad_input_gives_one_error_line_and_writes_nothing(args, names, workspace, request):
    if any("{unwritable}" in a for a in args):
        folder = request.getfixturevalue("unwritable")
        args = tuple(a.replace("{unwritable}", folder) for a in args)
        names = names.replace("{unwritable}", folder)
    before = snapshot(workspace)
    code, out, err = run_main(list(args))
    assert "Traceback" not in err, err
    assert code == 2, err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert names in err, err
    assert out == ""
    assert snapshot(workspace) == before


# -- in a real process ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "names"), [
    ((*SIM, "--out", "missing/x"), "error: --out missing/x: the folder missing does not exist\n"),
    (("recommend", "dup.csv"), "error: dup.csv line 3: duplicate adapter_id '[red]a' (first on line 2)\n"),
    (("simulate", "--max-loras", "x"), "error: Invalid value for '--max-loras'"),
])
def test_bad_input_in_a_process(args, names, workspace):
    before = snapshot(workspace)
    proc = subprocess.run([sys.executable, "-m", "loratwin.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(names) and proc.stderr.count("\n") == 1, proc.stderr
    assert snapshot(workspace) == before


# -- a write that fails midway ----------------------------------------------------------------------------

def _fail_on_third_table(monkeypatch):
    import pyarrow.parquet as pq

    write_table, calls = pq.write_table, []

    def failing(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", failing)


def test_a_results_folder_that_cannot_be_written_whole_is_not_written(workspace, monkeypatch):
    _fail_on_third_table(monkeypatch)
    before = snapshot(workspace)
    code, out, err = run_main([*SIM, "--out", "run"])
    assert code == 2 and err == "error: run: cannot write the results folder (No space left on device); nothing was written\n"
    assert snapshot(workspace) == before


def test_a_previous_result_survives_a_failed_rewrite(workspace, monkeypatch):
    code, _, err = run_main([*SIM, "--out", "run"])
    assert code == 0, err
    before = snapshot(workspace)
    _fail_on_third_table(monkeypatch)
    code, _, err = run_main([*SIM, "--seed", "1", "--out", "run"])
    assert code == 2 and "run: cannot write the results folder" in err
    assert snapshot(workspace) == before

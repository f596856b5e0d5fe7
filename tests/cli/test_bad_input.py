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
import json
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
DERIVE = ("profile", "derive", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "h200", "--out", "p.yaml")
GRID = "name: tiny\nduration_s: 60\nserved: [8, 16]\nmax_loras: [8]\nrates: [[0.8, 0.4, 0.2]]\nranks: [[8, 16]]\n"
# a lab's runs table, as `loratwin profile import` writes it (one run)
LAB_HEADER = ("run_id,source_set,model,max_loras,served_adapters,max_lora_rank,adapter_rank_cycle,rate_values,"
              "rate_counts,status,total_tok_s,mean_itl_ms")
LAB_ROW = "a,lab,llama-3.1-8b-instruct,2,4,16,8 16,0.1 0.2,2 2,ok,100,20"
FIT = ("profile", "fit", "lab.csv", "--model", "llama-3.1-8b-instruct", "--gpu", "h100-64gb", "--start",
       "llama-3.1-8b-instruct")
PROFILE_TEXT = (Path(__file__).resolve().parents[2] / "src" / "loratwin" / "profiles" / "data"
                / "llama-3.1-8b-instruct.yaml").read_text()
CAL_DECODE = ("model,status,experiment_set,mean_running,input_tokens,output_tokens,mean_itl_ms\n"
              "m,ok,default_latency_output,700,5,100,40\nm,ok,default_latency_output,800,5,200,44\n"
              "m,ok,default_latency_output,900,5,400,48\n")
CAL_SCHEDULER = ("gpu_loras,cpu_loras,avg_batch_size,avg_waiting_queue,scheduling_time_per_step_ms\n"
                 "8,8,5.8,0,0.04\n8,16,6.1,0.09,0.041\n")
CAL_LOADS = "model,status,max_lora_rank,adapter_rank,load_ms_mean,disk_load_ms_mean\nm,ok,16,16,6.4,90\n"
SHIPPED = Path(__file__).resolve().parents[2] / "src" / "loratwin" / "learn" / "models" / "llama-3.1-8b-instruct"
LINEAR_MODELS = ("total_tok_s", "starved", "best_served", "best_max_loras", "best_total_tok_s")
# a models folder as `loratwin train` writes it, of the linear models alone
LLAMA_MODELS = {
    "llama-models/manifest.json": json.dumps({
        "profile": "llama-3.1-8b-instruct", "defaults": {t: "linear" for t in LINEAR_MODELS},
        "models": {f"{t}.linear": {"file": f"{t}.linear.json", "target": t, "family": "linear"} for t in LINEAR_MODELS}}),
    **{f"llama-models/{t}.linear.json": (SHIPPED / f"{t}.linear.json").read_text() for t in LINEAR_MODELS},
}
# a placement with adapter b on both GPUs (what place --out writes, cut to what simulate-cluster reads)
CLUSTER = ("profile: llama-3.1-8b-instruct\ngpus:\n- {gpu: 0, adapters: [a, b], max_loras: 2, max_lora_rank: 16}\n"
           "- {gpu: 1, adapters: [b], max_loras: 1, max_lora_rank: 16}\nrouting:\n  a: {0: 1.0}\n  b: {0: 0.5, 1: 0.5}\n")
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
    "placement-qwen.yaml": "profile: qwen-2.5-7b-instruct\ngpus:\n- {gpu: 0, adapters: [a, b], max_loras: 2, "
                           "max_lora_rank: 16}\n",
    "placement-other.yaml": "profile: llama-3.1-8b-instruct\ngpus:\n- {gpu: 0, adapters: [x, y], max_loras: 2, "
                            "max_lora_rank: 16}\n",
    "placement-weights.yaml": "profile: llama-3.1-8b-instruct\ngpus:\n- {gpu: 0, adapters: [a, b], max_loras: 2, "
                              "max_lora_rank: 16}\nrouting: {a: {0: 0.5}, b: {0: 1}}\n",
    "rates.csv": "period,adapter_id,rank,rate\n0,a,8,0.5\n1,a,8,0.7\n",
    "rates-period.csv": "period,adapter_id,rank,rate\n-1,a,8,0.5\n",
    "rates-rank.csv": "period,adapter_id,rank,rate\n0,a,8,0.5\n1,a,16,0.7\n",
    "rates-header.csv": "adapter_id,rank,rate\na,8,0.5\n",
    "rates-twice.csv": "period,adapter_id,rank,rate\n0,a,8,0.5\n0,a,8,0.7\n",
    "rates-rate.csv": "period,adapter_id,rank,rate\n0,a,8,fast\n",
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
    "labrun2/server.log": (Path(__file__).resolve().parents[1] / "fixtures" / "lab" / "run-ok" / "server.log").read_text(),
    "labrun2/client-0.json": (Path(__file__).resolve().parents[1] / "fixtures" / "lab" / "run-ok" / "client-0.json")
    .read_text().replace('"ttfts": [0.030895', '"ttfts": ["0.030895"'),
    "labrun3/server.log": (Path(__file__).resolve().parents[1] / "fixtures" / "lab" / "run-ok" / "server.log")
    .read_text().replace("max_loras=4", "max_loras='abc'"),
    "fartrace/trace.csv": "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.5,a,10,20\n1e12,a,10,20\n",
    "fartrace/adapters.csv": "adapter_id,rank\na,8\n",
    "spacetrace/trace.csv": "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.5,a b,10,20\n",
    "spacetrace/adapters.csv": "adapter_id,rank\na b,8\n",
    "nopart/manifest.json": '{"format": "loratwin-sweep/1", "parts": [{"file": "part-000001-0a0b0c0d.parquet", '
                            '"rows": 2, "failed": 0}]}\n',
    "longtrace/trace.csv": "arrival_time_s,adapter_id,input_tokens,output_tokens\n0.5,a,10,20\n0.6,a,100000000,20\n",
    "longtrace/adapters.csv": "adapter_id,rank\na,8\n",
    "bigrank.csv": "adapter_id,rank,rate\na,8,0.5\nb,99999,0.2\n",
    "nots/summary.json": "{}\n",
    "nots/requests.parquet": "not parquet",
    "huge.csv": "adapter_id,rank,rate\na,8,1e308\nb,8,1e308\n",
    "tokenizer.yaml": PROFILE_TEXT.replace("tokenizer: llama-3.1-8b-instruct", "tokenizer: nope"),
    "intercept.yaml": "\n".join(
        "  intercept_ms: -1000" if line.strip().startswith("intercept_ms:") else line
        for line in PROFILE_TEXT.splitlines()),
    "norate.yaml": "adapters:\n  - {id: a, rank: 8, rate_req_s: 0.5}\n  - {id: b, rank: 16}\n",
    "eqid.yaml": "adapters:\n  - {id: 'x=y', rank: 8, rate_req_s: 0.5}\n",
    "commaid.yaml": "adapters:\n  - {id: 'x,y', rank: 8, rate_req_s: 0.5}\n",
    "commaid.csv": 'adapter_id,rank,rate\n"x,y",8,0.5\n',
    "zipf.yaml": "layout: {kind: zipf, served: 1000000, total_rate_req_s: 600, exponent: 1.0, ranks: [8, 16, 32]}\n",
    "tinykv.yaml": "name: tiny\nmodel: m\ngpu: g\nstep_time: {base_ms: 10, per_seq_ms: 0.03}\nadapter_load:\n"
                   "  cpu_to_gpu_ms: {8: {8: 6}}\n  disk_to_cpu_ms: {8: {8: 70}}\nkv:\n  capacity_tokens: {8: {8: 1}}\n",
    "cal/decode_latency.csv": CAL_DECODE,
    "cal/scheduler_overhead.csv": "gpu_loras,cpu_loras,avg_batch_size,avg_waiting_queue,scheduling_time_per_step_ms\n",
    "cal/adapter_loading.csv": CAL_LOADS,
    "cal/kv_capacity.csv": "model,max_loras,max_lora_rank,max_num_seqs,kv_cache_tokens,feasible\nm,8,8,2048,-5,1\n",
    "cal2/decode_latency.csv": CAL_DECODE.replace(",40\n", ",-1\n"),
    "cal3/decode_latency.csv": CAL_DECODE,
    "cal3/scheduler_overhead.csv": CAL_SCHEDULER,
    "cal3/adapter_loading.csv": CAL_LOADS.replace(",6.4,", ",1e12,"),
    "cal4/decode_latency.csv": CAL_DECODE,
    "cal4/scheduler_overhead.csv": CAL_SCHEDULER,
    "cal4/adapter_loading.csv": CAL_LOADS,
    "cal4/kv_capacity.csv": "model,max_loras,max_lora_rank,max_num_seqs,kv_cache_tokens,feasible\nm,8,8,2048,8.5,1\n",
    "cal5/decode_latency.csv": CAL_DECODE,
    "cal5/scheduler_overhead.csv": CAL_SCHEDULER,
    "cal5/adapter_loading.csv": CAL_LOADS,
    "cal5/kv_capacity.csv": "model,slots,max_lora_rank,max_num_seqs,kv_cache_tokens,feasible\nm,8,8,2048,300000,1\n",
    **LLAMA_MODELS,
    "badjson-models/manifest.json": "{bad",
    # a models folder whose manifest's slos is a string, not a list
    **{k.replace("llama-models/", "slostr-models/"): (v if not k.endswith("manifest.json")
       else v[:-1] + ', "slos": "ttft_p99:5000"}') for k, v in LLAMA_MODELS.items()},
    "nodefaults-models/manifest.json": '{"profile": "llama-3.1-8b-instruct", "models": {}}',
    "junk-models/manifest.json": LLAMA_MODELS["llama-models/manifest.json"],
    "junk-models/total_tok_s.linear.json": '{"format": "junk"}',
    "runs.csv": ("run_id,source_set,model,max_loras,served_adapters,max_lora_rank,adapter_rank_cycle,rate_values,"
                 "rate_counts,status,total_tok_s,starved_approx\n"
                 "r1,dt_modelling,llama-3.1-8b-instruct,8,8,16,8 16,0.1 0.2,4 4,ok,123.5,0\n"),
    "cluster.yaml": CLUSTER,
    "cluster-serving.yaml": CLUSTER + "serving: {warm: yes please, metrics_poll_s: 2}\n",
    "cluster-serving-typo.yaml": CLUSTER + "serving: {warmm: false, metrics_poll_s: 2}\n",
    "cluster-serving-short.yaml": CLUSTER + "serving: {metrics_poll_s: 2}\n",
    "cluster-poll.yaml": CLUSTER + "serving: {warm: true, metrics_poll_s: often}\n",
    "cluster-tiny-poll.yaml": CLUSTER + "serving: {warm: true, metrics_poll_s: 1.0e-9}\n",
    "cluster-unrouted.yaml": CLUSTER.replace("b: {0: 0.5, 1: 0.5}", "b: {0: 1.0}"),
    "cluster-weights.yaml": CLUSTER.replace("b: {0: 0.5, 1: 0.5}", "b: {0: 0.5, 1: 0.7}"),
    "cluster-gpu.yaml": CLUSTER.replace("b: {0: 0.5, 1: 0.5}", "b: {0: 0.5, 7: 0.5}"),
    "cluster-missing.yaml": CLUSTER.replace("adapters: [a, b]", "adapters: [b]").replace("  a: {0: 1.0}\n", ""),
    "cluster-extra.csv": ADAPTERS_CSV + "c,8,0.1\n",
    "cluster-moved.yaml": CLUSTER.replace("adapters: [a, b]", "adapters: [b]").replace("adapters: [b], max_loras: 1",
                                                                                       "adapters: [b, a], max_loras: 1"),
    "fast.yaml": "layout: {kind: zipf, served: 500, total_rate_req_s: 1e9, exponent: 1.0, ranks: [8]}\n",
    "cluster-huger.yaml": CLUSTER.replace("max_loras: 2,", "max_loras: 99999999999999999999999,"),
    "cluster-rank.yaml": CLUSTER.replace("max_loras: 1, max_lora_rank: 16", "max_loras: 1, max_lora_rank: 8"),
    "cluster-rank12.yaml": CLUSTER.replace("max_loras: 2, max_lora_rank: 16", "max_loras: 2, max_lora_rank: 12"),
    "cluster-cpu.yaml": CLUSTER.replace("max_loras: 2, max_lora_rank: 16", "max_loras: 2, max_lora_rank: 16, max_cpu_loras: 1"),
    "cluster-huge.yaml": CLUSTER.replace("max_loras: 2, max_lora_rank: 16",
                                         "max_loras: 1000000000000, max_lora_rank: 16, max_cpu_loras: 1000000000000"),
    "partial.yaml": "name: tiny\nmodel: m\ngpu: g\nstep_time: {per_seq_ms: 0.03}\nadapter_load:\n"
                    "  cpu_to_gpu_ms: {8: {8: 6}}\n  disk_to_cpu_ms: {8: {8: 70}}\nkv: {block_size: 16}\n",
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
    case("--starvation-threshold: must be strictly between 0 and 1, got 2", *SIM, "--starvation-threshold", "2"),
    case("--starvation-threshold: must be strictly between 0 and 1, got 0", *SIM, "--starvation-threshold", "0"),
    case("--starvation-threshold: must be strictly between 0 and 1, got -0.5", *SIM, "--starvation-threshold", "-0.5"),
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
    # simulate: a refusal names what the user gave (the flag, the file) and what dominates
    case("4e12 time-series samples, one every 1e-09 s (--sample-interval) over 4000 s (--duration)", "simulate",
         "--served", "4", "--rates", "1", "--ranks", "8", "--max-loras", "4", "--duration", "4000",
         "--sample-interval", "1e-9"),
    case("the window, 1e+12 s (to the last arrival in fartrace/trace.csv, at 1e+12 s), is beyond the twin's clock",
         "simulate", "--trace", "fartrace", "--max-loras", "1"),
    case("--ranks: adapter rank 600 is above 512, the largest --max-lora-rank vLLM accepts", "simulate", "--served",
         "4", "--rates", "1", "--ranks", "600", "--max-loras", "4"),
    case("--max-lora-rank 12: vLLM accepts only 8, 16, 32, 64, 128, 256, 320, 512", "simulate", "--served", "4",
         "--rates", "1", "--ranks", "8", "--max-loras", "4", "--max-lora-rank", "12"),
    case("--max-loras 2: more GPU slots than the 1 adapter served; the CPU cache (--max-cpu-loras, by default the "
         "served count, 1)", "simulate", "--trace", "trace", "--max-loras", "2"),
    case("spacetrace/adapters.csv line 2: adapter_id must hold no '=', no ',' and no spaces", "simulate", "--trace",
         "spacetrace", "--max-loras", "1"),
    case("profile tinykv.yaml: kv.capacity_tokens: at max_lora_rank 8, max_loras 8: 1 token, fewer than 2 KV blocks",
         *SIM, "--profile", "tinykv.yaml"),
    case("profile partial.yaml: missing field step_time.base_ms; kv: needs capacity_tokens (measured KV sizes) or "
         "memory (the memory model's inputs)", *SIM, "--profile", "partial.yaml"),
    case("--max-time: expected a duration such as 30m, 2h or 1d, got '2x'", *SIM, "--max-time", "2x"),
    case("simulate: roughly 71 s of work estimated for up to 3.4e6 engine steps over 36000 s (--duration), for 4 "
         "adapters and ~44,239 requests on the reference engine (--engine reference) (limit 10 s", "simulate",
         "--served", "4", "--rates", "0.4,0.2", "--ranks", "8,16", "--max-loras", "2", "--duration", "36000",
         "--engine", "reference", "--max-time", "10s"),
    # simulate: input files
    case("bad.yaml: line 2, column 3: invalid YAML", "simulate", "--workload", "bad.yaml", "--max-loras", "2"),
    case("dir[x]/missing[y].yaml does not exist", "simulate", "--workload", "dir[x]/missing[y].yaml",
         "--max-loras", "2"),
    case("existing is a folder", "simulate", "--workload", "existing", "--max-loras", "2"),
    case("afile: is a file; expected the trace folder, the one holding trace.csv and adapters.csv", "simulate",
         "--trace", "afile", "--max-loras", "2"),
    case("trace/trace.csv: is a file; expected the trace folder", "simulate", "--trace", "trace/trace.csv",
         "--max-loras", "1"),
    case("missing: trace directory not found", "simulate", "--trace", "missing", "--max-loras", "2"),
    case("longtrace/trace.csv line 3: input_tokens + output_tokens must be at most 10,000,000 (longer than any "
         "model's context), got 100,000,000 + 20", "simulate", "--trace", "longtrace", "--max-loras", "1"),
    case("give exactly one workload: --served N --rates R1,R2,.. --ranks K1,K2,.., or --workload FILE, or --trace DIR "
         "(got --served, --trace)", "simulate", "--served", "3", "--trace", "trace", "--max-loras", "1"),
    case("(got --rates, --workload)", "simulate", "--rates", "1", "--workload", "workload.yaml", "--max-loras", "1"),
    case("badtrace/trace.csv line 2: output_tokens must be an integer", "simulate", "--trace", "badtrace",
         "--max-loras", "2"),
    case("binary.bin: not a text file", *SIM, "--profile", "binary.bin"),
    case("existing is a folder; expected a profile YAML file", *SIM, "--profile", "existing"),
    case("unknown profile 'nope'", *SIM, "--profile", "nope"),
    # report
    case("missing does not exist", "report", "missing", "--out", "r"),
    case("afile holds no result loratwin can report on", "report", "afile", "--out", "r"),
    case("bad.yaml holds no result loratwin can report on", "report", "bad.yaml", "--out", "r"),
    case("nots: a `simulate --out` folder without timeseries.parquet; the result is incomplete", "report", "nots",
         "--out", "r"),
    case("brokenrun: cannot read the simulation result", "report", "brokenrun", "--out", "r"),
    case("--out missing/r: the folder missing does not exist", "report", "placement.yaml", "--out", "missing/r"),
    case("--out afile: is a file; expected a folder", "report", "placement.yaml", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "report", "placement.yaml", "--out", "existing"),
    case("--out brokenrun: is an input of this command; write the result elsewhere", "report",
         "brokenrun", "--out", "brokenrun"),
    case("nopart/parts/part-000001-0a0b0c0d.parquet: a part file listed in the manifest of nopart is missing; resume "
         "the sweep (loratwin sweep GRID --out nopart", "report", "nopart", "--out", "r"),
    case("nopart/parts/part-000001-0a0b0c0d.parquet: a part file listed in the manifest of nopart is missing",
         "labels", "nopart"),
    case("--out store: is an input of this command; write the result elsewhere", "labels", "store", "--out", "store"),
    case("--out existing: holds existing/notes.txt, an input of this command", "report", "existing/notes.txt",
         "--out", "existing"),
    case("Missing option '--out'", "report", "placement.yaml"),
    # workload describe
    case("missing.yaml does not exist", "workload", "describe", "missing.yaml"),
    case("bad.yaml: line 2, column 3: invalid YAML", "workload", "describe", "bad.yaml"),
    case("binary.bin: not a text file", "workload", "describe", "binary.bin"),
    case("--duration must be a positive number of seconds, got -1", "workload", "describe", "workload.yaml",
         "--duration", "-1"),
    case("existing/adapters.csv: adapters file not found", "workload", "describe", "existing"),
    case("bad.csv line 2: rank must be an integer > 0, got 'eight'", "workload", "describe", "bad.csv"),
    case("--duration must be at most 3.2e+07 s (a year", "workload", "describe", "workload.yaml", "--duration", "1e308",
         "--json"),
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
    case("validate: about 801 GB of memory and roughly 3 years needed for 1e8 replays (1 run of runs.csv x 1e8 "
         "seeds) on 1 worker", "validate", "runs.csv", "--seeds", "99999999", "--workers", "1"),
    case("validate: roughly 83 min of work estimated for 5,000 replays (1 run of runs.csv x 5,000 seeds) on 1 worker "
         "(limit 1 h, the default", "validate", "runs.csv", "--seeds", "5000", "--workers", "1"),
    case("validate: roughly 20 s of work estimated for 20 replays (1 run of runs.csv x 20 seeds) on 1 worker (limit "
         "5 s, from --max-time", "validate", "runs.csv", "--seeds", "20", "--workers", "1", "--max-time", "5s"),
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
    case("cal/scheduler_overhead.csv: no rows", "calibrate", "--model", "m", "--calibration-dir", "cal", "--out",
         "p.yaml"),
    case("cal2/decode_latency.csv line 2: mean_itl_ms: must be a finite number of ms from 0", "calibrate", "--model",
         "m", "--calibration-dir", "cal2", "--out", "p.yaml"),
    case("cal3/adapter_loading.csv line 2: load_ms_mean: must be a finite number of ms from 0 to 3,600,000", "calibrate",
         "--model", "m", "--calibration-dir", "cal3", "--out", "p.yaml"),
    case("cal4/kv_capacity.csv line 2: kv_cache_tokens: must be a whole number, got '8.5'", "calibrate", "--model", "m",
         "--calibration-dir", "cal4", "--out", "p.yaml"),
    case("cal5/kv_capacity.csv: missing column max_loras", "calibrate", "--model", "m", "--calibration-dir", "cal5",
         "--out", "p.yaml"),
    case("--fit-set selects runs of --runs: give --runs", "calibrate", "--model", "m", "--calibration-dir", "cal4",
         "--out", "p.yaml", "--fit-set", "nope"),
    case("Missing option '--model'", "calibrate", "--calibration-dir", "existing", "--out", "profile.yaml"),
    case("--lora-overhead-weight must be a finite number >= 0, got -1.0", "calibrate", "--model", "m",
         "--calibration-dir", "cal4", "--out", "p.yaml", "--runs", "runs.csv", "--lora-overhead-weight", "-1"),
    case("--lora-overhead-weight must be a finite number >= 0, got nan", "calibrate", "--model", "m",
         "--calibration-dir", "cal4", "--out", "p.yaml", "--runs", "runs.csv", "--lora-overhead-weight", "nan"),
    case("--lora-overhead-weight joins the runs' fit of the LoRA terms: give --runs", "calibrate", "--model", "m",
         "--calibration-dir", "cal4", "--out", "p.yaml", "--lora-overhead-weight", "1"),
    case("'--lora-overhead-weight': Input should be a valid number", "calibrate", "--model", "m", "--calibration-dir",
         "cal4", "--out", "p.yaml", "--lora-overhead-weight", "x"),
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
    case("--threshold: must be strictly between 0 and 1, got 2", "sweep", "grid.yaml", "--out", "s", "--threshold", "2"),
    case("--max-configs: must be >= 1, got 0", "sweep", "grid.yaml", "--out", "s", "--max-configs", "0"),
    case("--backend: expected one of local, ray", "sweep", "grid.yaml", "--out", "s", "--backend", "slurm"),
    case("--workers: must be >= 1, got 0", "sweep", "grid.yaml", "--out", "s", "--workers", "0"),
    case("--profile: unknown profile 'nope'", "sweep", "grid.yaml", "--out", "s", "--profile", "nope"),
    case("store holds results of another grid", "sweep", "grid-changed.yaml", "--out", "store"),
    case("--out existing: the folder holds notes.txt and is not a store to resume (it has none of grid.json, "
         "manifest.json, parts)", "sweep", "grid.yaml", "--out", "existing"),
    # labels
    case("missing: does not exist", "labels", "missing"),
    case("afile: not a folder", "labels", "afile"),
    case("existing: not a sweep results directory", "labels", "existing", "--out", "labels-out"),
    case("--out missing/l: the folder missing does not exist", "labels", "store", "--out", "missing/l"),
    case("--out afile: is a file; expected a folder", "labels", "store", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "labels", "store", "--out", "existing"),
    case("--threshold: must be strictly between 0 and 1, got 1", "labels", "store", "--threshold", "1"),
    case("--slo 'ttft_p99': expected KEY:MS", "labels", "store", "--slo", "ttft_p99"),
    case("--slo 'ttft_p95:100': unknown key 'ttft_p95'", "labels", "store", "--slo", "ttft_p95:100"),
    case("--slo 'itl_p99:-1': the limit must be a positive number", "labels", "store", "--slo", "itl_p99:-1"),
    case("--slo: ttft_p99 is given twice", "labels", "store", "--slo", "ttft_p99:100", "--slo", "ttft_p99:200"),
    # train
    case("--out missing/m: the folder missing does not exist", "train", "store", "--out", "missing/m"),
    case("--out afile: is a file; expected a folder", "train", "store", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "train", "store", "--out", "existing"),
    case("--folds: must be >= 2, got 1", "train", "store", "--out", "m", "--folds", "1"),
    case("--families: unknown nope", "train", "store", "--out", "m", "--families", "nope"),
    case("--threshold: must be strictly between 0 and 1, got 0", "train", "store", "--out", "m", "--threshold", "0"),
    case("--slo 'ttft_p99:abc': expected a number of milliseconds", "train", "store", "--out", "m", "--slo",
         "ttft_p99:abc"),
    case("--slo 'tpot:40': unknown key 'tpot'", "train", "--profile", "llama-3.1-8b-instruct", "--out", "m", "--slo",
         "tpot:40"),
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
    case("badjson-models/manifest.json: line 1, column 2: invalid JSON", "explain", "--models", "badjson-models"),
    case("nodefaults-models/manifest.json: missing defaults", "explain", "--models", "nodefaults-models"),
    case("junk-models/total_tok_s.linear.json: not a", "explain", "--models", "junk-models"),
    # recommend
    case("missing.csv does not exist", "recommend", "missing.csv"),
    # --slo KEY:MS (loratwin.slo), on every command that takes it
    case("--slo 'ttft_p99': expected KEY:MS", "recommend", "adapters.csv", "--slo", "ttft_p99"),
    case("--slo 'foo:1': unknown key 'foo'", "place", "adapters.csv", "--slo", "foo:1"),
    case("--slo 'ttft_p99:-1': the limit must be a positive number of milliseconds", *SIM, "--slo", "ttft_p99:-1"),
    case("--slo: ttft_p99 is given twice", "recommend", "adapters.csv", "--slo", "ttft_p99:100", "--slo",
         "ttft_p99:200"),
    case("--slo 'itl_p99:x': expected a number of milliseconds", *SIM, "--slo", "itl_p99:x", "--out", "run"),
    case("--slo 'ttft_mean:0'", "place", "adapters.csv", "--slo", "ttft_mean:0", "--out", "p.yaml"),
    # serving conditions
    case("--metrics-poll must be 0 (no scrapes) or a number of seconds from 0.001 to 3600, got -1", *SIM, "--metrics-poll", "-1"),
    case("--metrics-poll must be 0 (no scrapes) or a number of seconds from 0.001 to 3600, got nan", "recommend", "adapters.csv",
         "--metrics-poll", "nan"),
    case("--metrics-poll must be 0 (no scrapes) or a number of seconds from 0.001 to 3600, got 1e+09", "place", "adapters.csv",
         "--metrics-poll", "1e9", "--out", "p.yaml"),
    case("--metrics-poll must be 0 (no scrapes) or a number of seconds from 0.001 to 3600, got inf", "simulate-cluster",
         "cluster.yaml", "adapters.csv", "--metrics-poll", "inf"),
    # scrapes are played through one by one: a day polled every millisecond is refused before it starts
    case("8.6e7 /metrics scrapes (--metrics-poll) over 86400 s", "simulate", "--served", "1", "--rates", "0.01",
         "--ranks", "8", "--max-loras", "1", "--duration", "86400", "--metrics-poll", "0.001", "--max-memory", "400M"),
    # an interval that rounds to 0 ns scraped from the window's start (p99 ITL 0 ms, mean TTFT x100)
    case("--metrics-poll must be 0 (no scrapes) or a number of seconds from 0.001 to 3600, got 1e-09", *SIM,
         "--metrics-poll", "1e-9"),
    case("--metrics-poll must be 0 (no scrapes) or a number of seconds from 0.001 to 3600, got 0.0001",
         "replay-drift", "rates.csv", "--metrics-poll", "0.0001"),
    case("--slo 'ttft_p99:100,itl_p99:50': one SLO per --slo, e.g. --slo ttft_p99:100 --slo itl_p99:50", *SIM,
         "--slo", "ttft_p99:100,itl_p99:50"),
    case("slostr-models/manifest.json: slos: expected a list of KEY:MS, e.g. [ttft_p99:2000], got 'ttft_p99:5000'",
         "recommend", "adapters.csv", "--models", "slostr-models"),
    case("rank 99999 is above 512, the largest --max-lora-rank vLLM accepts. No number of GPUs or replicas serves it: "
         "reduce the adapter to rank 512 or below.", "recommend", "bigrank.csv"),
    case("cannot be placed on one GPU of profile llama-3.1-8b-instruct: rank 99999 is above 512, the largest "
         "--max-lora-rank vLLM accepts. No number of GPUs or replicas serves it", "place", "bigrank.csv", "--out",
         "pl.yaml"),
    case("bad.csv line 2: rank must be an integer > 0, got 'eight'", "recommend", "bad.csv"),
    case("dup.csv line 3: duplicate adapter_id '[red]a'", "recommend", "dup.csv"),
    case("binary.bin: expected a .csv", "recommend", "binary.bin"),
    case("huge.csv line 2: rate must be a number from 0 to 1e9 (req/s), got '1e308'", "recommend", "huge.csv"),
    case("--adapter-dir: name the folder the adapters lie in", "recommend", "adapters.csv", "--adapter-dir", " "),
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
    case("--duration must be a positive number of seconds, got 0", "recommend", "adapters.csv", "--duration", "0",
         "--refine"),
    case("--duration must be a positive number of seconds, got -1", "recommend", "adapters.csv", "--duration", "-1"),
    case("--window and --duration are the same setting: give one of them", "recommend", "adapters.csv",
         "--window", "60", "--duration", "60"),
    case("--seed must be >= 0, got -1", "recommend", "adapters.csv", "--seed", "-1", "--verify",
         "--command-out", "serve.sh"),
    case("--starvation-threshold: must be strictly between 0 and 1, got 1.5", "recommend", "adapters.csv", "--starvation-threshold",
         "1.5"),
    case("--max-wait must be > 0 seconds", "recommend", "adapters.csv", "--max-wait", "-5"),
    case("--check must be one of", "recommend", "adapters.csv", "--check", "oracle"),
    case("--models missing: does not exist", "recommend", "adapters.csv", "--models", "missing"),
    case("badjson-models/manifest.json: line 1, column 2: invalid JSON", "recommend", "adapters.csv", "--models",
         "badjson-models"),
    case("nodefaults-models/manifest.json: missing defaults", "recommend", "adapters.csv", "--models",
         "nodefaults-models"),
    case("junk-models/total_tok_s.linear.json: not a", "recommend", "adapters.csv", "--models", "junk-models"),
    case("nodefaults-models/manifest.json: missing defaults", "recommend", "adapters.csv", "--models",
         "nodefaults-models", "--check", "learned"),
    case("--models llama-models: models trained on profile llama-3.1-8b-instruct, not on --profile "
         "qwen-2.5-7b-instruct", "recommend", "adapters.csv", "--models", "llama-models", "--profile",
         "qwen-2.5-7b-instruct", "--check", "learned"),
    case("Option '--verify' does not take a value", "recommend", "adapters.csv", "--verify=yes"),
    # quickstart
    case("No such option: --bogus", "quickstart", "--bogus"),
    case("unexpected extra argument", "quickstart", "extra"),
    case("Option '--check' does not take a value", "quickstart", "--check=x"),
    case("unknown profile 'nope'", "quickstart", "--profile", "nope"),
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
    case("--routing-out r.txt: expected a .yaml or .json file name", "place", "adapters.csv", "--routing-out", "r.txt"),
    case("--routing-out missing/r.json: the folder missing does not exist", "place", "adapters.csv",
         "--routing-out", "missing/r.json"),
    case("--routing-out dir.yaml: is a folder; expected a file name", "place", "adapters.csv", "--routing-out",
         "dir.yaml"),
    case("--routing-out workload.yaml: is an input of this command", "place", "workload.yaml", "--routing-out",
         "workload.yaml"),
    case("--routing-out p.yaml: the same place as --out", "place", "adapters.csv", "--out", "p.yaml",
         "--routing-out", "p.yaml"),
    case("--gpus must be >= 1, got 0", "place", "adapters.csv", "--gpus", "0", "--out", "placement.yaml"),
    case("place: about 1.3e25 bytes of memory and roughly ", "place", "adapters.csv", "--gpus", "99999999999999999999999"),
    case("--search-moves must be >= 0", "place", "adapters.csv", "--search-moves", "-1"),
    case("--algorithm must be one of", "place", "adapters.csv", "--algorithm", "best"),
    case("--window must be a positive number of seconds, got 0", "place", "adapters.csv", "--verify",
         "--window", "0", "--out", "placement.yaml"),
    case("missing.yaml does not exist; expected a placement file", "place", "adapters.csv", "--from", "missing.yaml"),
    case("--from placement.yaml: expected a placement: GPUs with their adapters", "place", "adapters.csv", "--from",
         "placement.yaml"),
    case("adapters.csv: expected a placement file (.yaml or .json, as place --out writes)", "place", "workload.yaml",
         "--from", "adapters.csv"),
    case("--from placement-qwen.yaml: the placement was made for profile 'qwen-2.5-7b-instruct', not "
         "'llama-3.1-8b-instruct'", "place", "adapters.csv", "--from", "placement-qwen.yaml"),
    case("--from placement-weights.yaml: routing.a: the weights must sum to 1, got 0.5", "place", "adapters.csv",
         "--from", "placement-weights.yaml"),
    case("--from placement-other.yaml: none of its 2 adapters is in the new workload, so it is a placement of "
         "another workload", "place", "adapters.csv", "--from", "placement-other.yaml"),
    case("--from placement.yaml: --gpus does not apply to a re-placement", "place", "adapters.csv", "--from",
         "placement.yaml", "--gpus", "2"),
    # replay-drift
    case("missing.csv", "replay-drift", "missing.csv"),
    case("rates-header.csv line 1: expected the header period,adapter_id,rank,rate", "replay-drift",
         "rates-header.csv"),
    case("rates-period.csv line 2: period must be an integer >= 0, got '-1'", "replay-drift", "rates-period.csv"),
    case("rates-rank.csv line 3: adapter 'a' has rank 16, but rank 8 on line 2", "replay-drift", "rates-rank.csv"),
    case("rates-twice.csv line 3: adapter 'a' twice in period 0 (first on line 2)", "replay-drift", "rates-twice.csv"),
    case("rates-rate.csv line 2: rate must be a number from 0 to 1e9 (req/s), got 'fast'", "replay-drift",
         "rates-rate.csv"),
    case("adapters.csv line 1: expected the header period,adapter_id,rank,rate", "replay-drift", "adapters.csv"),
    case("afile: expected a CSV period,adapter_id,rank,rate, a workload YAML or a trace directory", "replay-drift",
         "afile"),
    case("--duration must be a number of seconds >= --period (300), got 10.0", "replay-drift", "workload.yaml",
         "--duration", "10"),
    case("--period must be a number of seconds > 0, got 0.0", "replay-drift", "rates.csv", "--period", "0"),
    case("--out existing: the folder holds notes.txt", "replay-drift", "rates.csv", "--out", "existing"),
    case("--out afile: is a file; expected a folder", "replay-drift", "rates.csv", "--out", "afile"),
    case("--workers must be >= 0, got -1", "replay-drift", "rates.csv", "--workers", "-1"),
    case("--window must be a positive number of seconds, got 0", "replay-drift", "rates.csv", "--window", "0"),
    case("--check must be one of", "replay-drift", "rates.csv", "--check", "guess"),
    case("--router must be one of weighted-random, least-outstanding, affinity, got 'nearest'", "replay-drift",
         "rates.csv", "--router", "nearest"),
    case("--seed must be >= 0, got -1", "replay-drift", "trace", "--seed", "-1"),
    # every period is placed by the twin under --check twin: priced before the first one starts
    case("for the twin check (--check twin) and the cluster twin of each period", "replay-drift", "workload.yaml",
         "--duration", "600", "--check", "twin", "--max-time", "3s"),
    case("missing does not exist; expected a CSV period,adapter_id,rank,rate, a workload YAML or a trace directory",
         "replay-drift", "missing"),
    # a period so short that the periods alone outgrow memory: refused before they are counted
    case("6e11 periods of 1e-09 s (--period) of 2 adapters", "replay-drift", "workload.yaml", "--period", "1e-9",
         "--duration", "600"),
    case("--from cluster-unrouted.yaml: routing.b: GPU 1 holds it but gets no weight", "place", "adapters.csv", "--from",
         "cluster-unrouted.yaml", id="place --from cluster-unrouted.yaml"),
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
    case("--starvation-threshold: must be strictly between 0 and 1, got 2", "place", "adapters.csv", "--starvation-threshold", "2"),
    case("--verify-duration must be a positive number of seconds, got 0", "place", "adapters.csv",
         "--verify-duration", "0"),
    case("--verify-duration must be a positive number of seconds, got nan", "place", "adapters.csv",
         "--verify-duration", "nan"),
    # profile derive
    case("--gpu-memory-utilization: Input should be less than or equal to 1, got 1.5", *DERIVE,
         "--gpu-memory-utilization", "1.5"),
    case("--gpu-memory-utilization: Input should be greater than 0, got 0.0", *DERIVE, "--gpu-memory-utilization", "0"),
    case("--gpu-memory-utilization: Input should be a finite number, got nan", *DERIVE,
         "--gpu-memory-utilization", "nan"),
    case("--max-num-seqs: Input should be greater than 0, got 0", *DERIVE, "--max-num-seqs", "0"),
    case("--max-num-seqs: Input should be less than or equal to 1000000, got 2000000", *DERIVE, "--max-num-seqs",
         "2000000", "--max-num-batched-tokens", "9000000"),
    case("--max-num-batched-tokens: Input should be greater than 0, got -5", *DERIVE,
         "--max-num-batched-tokens", "-5"),
    case("--max-num-batched-tokens 1024: vLLM needs at least --max-num-seqs (2048)", *DERIVE, "--max-num-seqs", "2048",
         "--max-num-batched-tokens", "1024"),
    case("--max-model-len 200000: above the model's max_position_embeddings (131,072), which vLLM refuses",
         *DERIVE, "--max-model-len", "200000"),
    case("--max-model-len: Input should be greater than 0, got 0", *DERIVE, "--max-model-len", "0"),
    case("--model: unknown model 'nope'", "profile", "derive", "--model", "nope", "--gpu", "h200", "--out", "p.yaml"),
    case("--gpu: unknown GPU 'nope'", "profile", "derive", "--model", "Llama-3.1-8B-Instruct", "--gpu", "nope",
         "--out", "p.yaml"),
    case("bad.yaml: line 2, column 3: invalid YAML", "profile", "derive", "--model", "Llama-3.1-8B-Instruct",
         "--gpu", "bad.yaml", "--out", "p.yaml"),
    case("missing.json does not exist", "profile", "derive", "--model", "missing.json", "--gpu", "h200",
         "--out", "p.yaml"),
    case("--out p.txt: expected a .yaml file name", "profile", "derive", "--model", "Llama-3.1-8B-Instruct",
         "--gpu", "h200", "--out", "p.txt"),
    case("--out missing/p.yaml: the folder missing does not exist", "profile", "derive", "--model",
         "Llama-3.1-8B-Instruct", "--gpu", "h200", "--out", "missing/p.yaml"),
    case("--out dir.yaml: is a folder; expected a file name", "profile", "derive", "--model",
         "Llama-3.1-8B-Instruct", "--gpu", "h200", "--out", "dir.yaml"),
    case("--gpu, --out: required to derive a profile", "profile", "derive", "--model", "Llama-3.1-8B-Instruct"),
    case("--json: lists as JSON with --list only", *DERIVE, "--json"),
    case("'--max-num-seqs'", *DERIVE, "--max-num-seqs", "many"),
    case("--models afile: is not a folder", "place", "adapters.csv", "--check", "learned", "--models", "afile"),
    case("place: roughly 15 s of work estimated for simulating ~25 GPU shares of 3600 s (--window) for the twin check "
         "(--check twin) and --verify, 2 adapters at 0.7 req/s (limit 5 s", "place", "adapters.csv", "--check", "twin",
         "--verify", "--max-time", "5s"),
    case("--models llama-models: place reads the models only with --check learned (got --check auto)", "place",
         "adapters.csv", "--models", "llama-models"),
    case("badjson-models/manifest.json: line 1, column 2: invalid JSON", "place", "adapters.csv", "--check", "learned",
         "--models", "badjson-models"),
    # simulate --bench-json
    case("--bench-json existing: is a folder; expected a file name", *SIM, "--bench-json", "existing"),
    case("--bench-json missing/b.json: the folder missing does not exist", *SIM, "--bench-json", "missing/b.json"),
    case("--bench-json writes one run: use it without --seeds", *SIM, "--seeds", "2", "--bench-json", "b.json"),
    case("--bench-json profile.yaml: expected a .json file name", *SIM, "--bench-json", "profile.yaml"),
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
    case("--adapter-dir: name the folder the adapters lie in", "profile", "plan", "--model", LLAMA, "--gpu",
         "h100-80gb", "--adapter-dir", ""),
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
    case("labrun2/client-0.json: ttfts[0] must be a time in s from 0 to 86400, got '0.030895'", "profile", "import",
         "labrun2", "--out", "runs.csv"),
    case("labrun3/server.log: the server's arguments: max_loras must be a whole number >= 1, got 'abc'", "profile",
         "import", "labrun3", "--out", "runs.csv"),
    case("huge.csv line 2: rate must be a number from 0 to 1e9 (req/s), got '1e308'", "place", "huge.csv"),
    case("--adapter-dir: name the folder the adapters lie in, e.g. ./adapters or /srv/lora, got ''", "place",
         "adapters.csv", "--adapter-dir", ""),
    case("place: roughly 45 h of work estimated for placing 1e6 adapters (limit 1 h, the default: set --max-time or "
         "LORATWIN_MAX_TIME to raise it)", "place", "zipf.yaml"),
    # adapter ids: one rule (check_adapter_id) wherever ids are read
    case("eqid.yaml: adapters[0].id: adapter_id must hold no '=', no ',' and no spaces", "recommend", "eqid.yaml"),
    case("commaid.yaml: adapters[0].id: adapter_id must hold no '=', no ',' and no spaces", "place", "commaid.yaml"),
    case("commaid.yaml: adapters[0].id: adapter_id must hold no '=', no ','", "simulate", "--workload",
         "commaid.yaml", "--max-loras", "1"),
    case("commaid.csv line 2: adapter_id must hold no '=', no ','", "recommend", "commaid.csv"),
    # workload YAML: a rate left out is refused, not read as 0
    case("norate.yaml line 3: adapters[1] (id 'b'): rate_req_s is required", "simulate", "--workload",
         "norate.yaml", "--max-loras", "2"),
    case("norate.yaml line 3: adapters[1] (id 'b'): rate_req_s is required", "place", "norate.yaml"),
    # profile YAML: the tokenizer must name a length table; the scheduler intercept is bounded
    case("profile tokenizer.yaml: tokenizer: unknown tokenizer 'nope'; expected the name of a length table: "
         "llama-3.1-8b-instruct, qwen-2.5-7b-instruct", *SIM, "--profile", "tokenizer.yaml"),
    case("profile intercept.yaml: scheduler_overhead.intercept_ms: must be a finite number of ms from -10 to",
         *SIM, "--profile", "intercept.yaml"),
    # --max-memory: too large named as such; the refusal names the setting used
    case("--max-memory: '1e308' is too large: the largest size is", "recommend", "adapters.csv", "--max-memory",
         "1e308"),
    case("--max-memory: '99999999999999999999T' is too large", "place", "adapters.csv", "--max-memory",
         "99999999999999999999T"),
    case("(limit 10 B, from --max-memory: raise it to allow this)", "recommend", "adapters.csv", "--max-memory", "10"),
    # comma lists: one parser, empty items refused by position
    case("--rates: item 2 of 3 is empty in '1,,2'", "simulate", "--served", "4", "--rates", "1,,2", "--ranks", "8",
         "--max-loras", "2"),
    case("--ranks: item 2 of 2 is empty in '8,'", "simulate", "--served", "4", "--rates", "1", "--ranks", "8,",
         "--max-loras", "2"),
    case("--ranks: '7.5' is not an integer (expected a comma-separated list, e.g. 8,16,32)", "simulate", "--served",
         "4", "--rates", "1", "--ranks", "7.5", "--max-loras", "2"),
    case("--families: item 1 of 2 is empty", "train", "store", "--out", "m", "--families", ",tree"),
    # simulate-cluster
    case("missing.yaml does not exist", "simulate-cluster", "missing.yaml", "adapters.csv"),
    case("missing.csv does not exist", "simulate-cluster", "cluster.yaml", "missing.csv"),
    case("cluster-serving.yaml: serving.warm: expected true or false, got 'yes please'", "simulate-cluster",
         "cluster-serving.yaml", "adapters.csv"),
    case("cluster-serving-typo.yaml: serving.warmm: unknown field; expected warm and metrics_poll_s",
         "simulate-cluster", "cluster-serving-typo.yaml", "adapters.csv"),
    case("cluster-serving-short.yaml: serving.warm: missing; expected warm and metrics_poll_s", "simulate-cluster",
         "cluster-serving-short.yaml", "adapters.csv"),
    case("cluster-poll.yaml: serving.metrics_poll_s: expected a number of seconds, got 'often'", "simulate-cluster",
         "cluster-poll.yaml", "adapters.csv"),
    # the --metrics-poll rule, named by the placement's field, also when the flag overrides it
    case("cluster-tiny-poll.yaml: serving.metrics_poll_s must be 0 (no scrapes) or a number of seconds from 0.001 "
         "to 3600, got 1e-09", "simulate-cluster", "cluster-tiny-poll.yaml", "adapters.csv"),
    case("cluster-tiny-poll.yaml: serving.metrics_poll_s must be 0 (no scrapes)", "simulate-cluster",
         "cluster-tiny-poll.yaml", "adapters.csv", "--metrics-poll", "15"),
    case("cluster.yaml: a placement (gpus:, as place --out writes), not a workload", "simulate-cluster", "cluster.yaml",
         "cluster.yaml"),
    case("cluster.yaml: a placement (gpus:, as place --out writes), not a workload", "place", "cluster.yaml"),
    case("missing.yaml does not exist", "simulate-cluster", "missing.yaml", "fast.yaml"),  # before the workload's size
    case("afile: expected a placement file (.yaml or .json", "simulate-cluster", "afile", "adapters.csv"),
    case("bad.yaml: line 2, column 3: invalid YAML", "simulate-cluster", "bad.yaml", "adapters.csv"),
    case("placement.yaml: gpus: expected a non-empty list of GPUs", "simulate-cluster", "placement.yaml", "adapters.csv"),
    case("cluster-weights.yaml: routing.b: the weights must sum to 1, got 1.2", "simulate-cluster",
         "cluster-weights.yaml", "adapters.csv"),
    case("cluster-gpu.yaml: routing.b: 7 is not a GPU of gpus: (its GPUs: 0, 1)", "simulate-cluster", "cluster-gpu.yaml",
         "adapters.csv"),
    case("cluster-moved.yaml: routing.a.0: GPU 0 does not hold a (gpus[0].adapters does not list it)", "simulate-cluster",
         "cluster-moved.yaml", "adapters.csv"),
    case("cluster-missing.yaml: gpus: adapters of the workload on no GPU: a", "simulate-cluster", "cluster-missing.yaml",
         "adapters.csv"),
    case("cluster.yaml: gpus: adapters of the workload on no GPU: c", "simulate-cluster", "cluster.yaml",
         "cluster-extra.csv"),
    case("cluster.yaml: gpus[0].adapters: not in the workload: b", "simulate-cluster", "cluster.yaml", "trace"),
    case("--router must be one of weighted-random, least-outstanding, affinity, got 'nope'", "simulate-cluster",
         "cluster.yaml", "adapters.csv", "--router", "nope"),
    case("--spill-threshold must be an integer from 0 to", "simulate-cluster", "cluster.yaml", "adapters.csv", "--router",
         "affinity", "--spill-threshold", "-1"),
    case("--spill-threshold is for --router affinity (the weighted-random router spills nothing)", "simulate-cluster",
         "cluster.yaml", "adapters.csv", "--spill-threshold", "10"),
    case("--workers must be >= 0", "simulate-cluster", "cluster.yaml", "adapters.csv", "--workers", "-1"),
    case("--spill-threshold must be an integer from 0 to 9223372036854775807 (outstanding requests), got "
         "99999999999999999999", "simulate-cluster", "cluster.yaml", "adapters.csv", "--router", "affinity",
         "--spill-threshold", "99999999999999999999"),
    case("--starvation-threshold: must be strictly between 0 and 1, got 1", "simulate-cluster", "cluster.yaml",
         "adapters.csv", "--starvation-threshold", "1"),
    # a placement's per-GPU flags are vLLM's, refused before anything runs, naming the file and the GPU
    case("cluster-rank.yaml: gpus[1] (GPU 1): adapter 'b' has rank 16, above --max-lora-rank 8", "simulate-cluster",
         "cluster-rank.yaml", "adapters.csv"),
    case("cluster-rank12.yaml: gpus[0] (GPU 0): --max-lora-rank 12: vLLM accepts only", "simulate-cluster",
         "cluster-rank12.yaml", "adapters.csv"),
    case("cluster-cpu.yaml: gpus[0] (GPU 0): --max-cpu-loras (1) must be >= --max-loras (2)", "simulate-cluster",
         "cluster-cpu.yaml", "adapters.csv"),
    case("cluster-huge.yaml: gpus[0] (GPU 0): vLLM does not start with --max-loras 1000000000000", "simulate-cluster",
         "cluster-huge.yaml", "adapters.csv"),
    case("cluster-huger.yaml: gpus[0].max_loras: Input should be less than or equal to 9223372036854775807",
         "simulate-cluster", "cluster-huger.yaml", "adapters.csv"),
    case("--client-max-waiting: Input should be less than or equal to 9223372036854775807", "simulate-cluster",
         "cluster.yaml", "adapters.csv", "--client-max-waiting", "99999999999999999999999"),
    case("--client-max-waiting: Input should be less than or equal to 9223372036854775807", *SIM,
         "--client-max-waiting", "99999999999999999999999"),
    # work refused before it starts: no progress line before the error
    case("--duration inf s is beyond the twin's clock", "simulate-cluster", "cluster.yaml", "adapters.csv",
         "--duration", "inf"),
    case("(limit 1 s, from --max-time", "simulate-cluster", "cluster.yaml", "adapters.csv", "--duration", "360000",
         "--max-time", "1s"),
    case("--duration must be > 0 seconds, got 0", "simulate-cluster", "cluster.yaml", "adapters.csv", "--duration", "0"),
    case("--ray: the least-outstanding router reads every replica's state", "simulate-cluster", "cluster.yaml",
         "adapters.csv", "--router", "least-outstanding", "--ray", "--duration", "5"),
    case("--out afile: is a file; expected a folder", "simulate-cluster", "cluster.yaml", "adapters.csv", "--out", "afile"),
    case("--out existing: the folder holds notes.txt", "simulate-cluster", "cluster.yaml", "adapters.csv", "--out",
         "existing"),
    case("--router must be one of weighted-random, least-outstanding, affinity, got 'nope'", "place", "adapters.csv",
         "--verify", "--router", "nope"),
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
    for name in ("LORATWIN_MAX_TIME", "LORATWIN_MAX_MEMORY"):  # --max-time and --max-memory set them in-process
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
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
                "profile import", "profile derive", "profile fit", "simulate-cluster", "replay-drift"}
    assert set(counts) == commands, commands - set(counts)
    assert len(CASES) >= 60


@pytest.mark.parametrize(("args", "names"), CASES)
def test_bad_input_gives_one_error_line_and_writes_nothing(args, names, workspace, request, monkeypatch):
    for name in ("LORATWIN_MAX_MEMORY", "LORATWIN_MAX_TIME"):  # --max-memory and --max-time write these
        monkeypatch.setenv(name, "")  # so that the value before is restored after
        monkeypatch.delenv(name)
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


def test_an_empty_read_only_out_folder_is_refused_and_kept(workspace, monkeypatch):
    (workspace / "ro").mkdir()
    (workspace / "ro").chmod(0o500)
    if os.geteuid() == 0:  # root writes in a read-only folder: the probe is told what a user would be told
        mkstemp = tempfile.mkstemp

        def denied(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).name == "ro":
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    try:
        before = snapshot(workspace)
        code, out, err = run_main([*SIM, "--out", "ro"])
        assert code == 2 and out == "" and err.startswith("error: --out ro: cannot write in ro (") and err.count("\n") == 1, err
        assert snapshot(workspace) == before and (workspace / "ro").stat().st_mode & 0o777 == 0o500
    finally:
        (workspace / "ro").chmod(0o700)


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

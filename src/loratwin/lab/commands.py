"""The shell commands that carry out a planned run on vLLM 0.8.5: `vllm serve` with the run's flags and
adapters, and one benchmark client per rate level.

The client is `benchmarks/benchmark_serving.py` of the vLLM v0.8.5 source tree. In 0.8.5 it has the
ShareGPT and random datasets, `--lora-modules` (each request picks one of the listed adapters uniformly
at random), `--save-result`, `--result-dir`, `--result-filename`, `--metadata KEY=VALUE`,
`--percentile-metrics` and `--metric-percentiles`; `vllm bench serve` of 0.8.5 offers only the random
dataset (the other datasets came to it after 0.8.5, vLLM pull request 18566).

The client has one Poisson rate for all its requests and no per-adapter rates. A run with several rate
levels therefore starts one client per level, in parallel: the client of level k sends at
rate_k x n_k req/s and lists the n_k adapters of that level, so each of them receives a Poisson stream
at rate_k (a uniform random pick from a Poisson stream thins it into independent Poisson streams).
Each client writes its own result file; `loratwin profile import` merges them.
"""

from __future__ import annotations

import shlex
from collections import Counter

from loratwin.lab.bench_json import META_CLIENTS, META_COUNTS, META_RANKS, META_RATES, META_RUN
from loratwin.lab.plan import ADAPTER_FOLDERS_PER_RANK, PlannedRun

CLIENT_SCRIPT = "benchmarks/benchmark_serving.py"  # in a checkout of vLLM v0.8.5
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
SERVER_LOG = "server.log"
PORT = 8000


def adapter_name(index: int) -> str:
    return f"lora-{index}"


def client_file(client: int) -> str:
    return f"client-{client}.json"


def adapter_paths(run: PlannedRun) -> list[str]:
    """The folder of each served adapter: its rank's folders, in turn."""
    seen: Counter[int] = Counter()
    paths = []
    for i in range(run.served_adapters):
        rank = run.adapter_rank(i)
        paths.append(f"{rank_folder(run.flags.adapter_dir, rank)}/adapter-{seen[rank] % ADAPTER_FOLDERS_PER_RANK:03d}")
        seen[rank] += 1
    return paths


def rank_folder(adapter_dir: str, rank: int) -> str:
    return f"{adapter_dir.rstrip('/')}/rank-{rank}"


def adapter_folders_needed(runs: list[PlannedRun]) -> dict[int, int]:
    """Adapter folders per rank that the runs' commands use (make-adapters --count)."""
    needed: dict[int, int] = {}
    for run in runs:
        counts = Counter(run.adapter_rank(i) for i in range(run.served_adapters))
        for rank, count in counts.items():
            needed[rank] = max(needed.get(rank, 0), min(count, ADAPTER_FOLDERS_PER_RANK))
    return dict(sorted(needed.items()))


def make_adapters_commands(model: str, runs: list[PlannedRun]) -> list[list[str]]:
    adapter_dir = runs[0].flags.adapter_dir if runs else "./adapters"
    return [["loratwin", "profile", "make-adapters", "--model", model, "--rank", str(rank), "--count", str(count),
             "--out", rank_folder(adapter_dir, rank), "--seed", str(rank)]
            for rank, count in adapter_folders_needed(runs).items()]


def serve_command(run: PlannedRun, model: str) -> list[str]:
    f = run.flags
    modules = [f"{adapter_name(i)}={path}" for i, path in enumerate(adapter_paths(run))]
    return [
        "vllm", "serve", model, "--port", str(PORT), "--disable-log-requests", "--no-enable-prefix-caching",
        "--gpu-memory-utilization", f"{f.gpu_memory_utilization:g}", "--max-model-len", str(f.max_model_len),
        "--max-num-seqs", str(f.max_num_seqs), "--max-num-batched-tokens", str(f.max_num_batched_tokens),
        "--enable-lora", "--max-loras", str(run.max_loras), "--max-lora-rank", str(run.max_lora_rank),
        "--max-cpu-loras", str(run.max_cpu_loras), "--lora-modules", *modules,
    ]


def client_commands(run: PlannedRun, model: str) -> list[list[str]]:
    """One benchmark client per rate level above 0 (module docstring), seeded by the run's client seed + its
    number."""
    commands = []
    active = [(level, rate, count) for level, (rate, count) in enumerate(zip(run.rate_values, run.rate_counts, strict=True))
              if rate > 0]
    for client, (level, rate, count) in enumerate(active):
        names = [adapter_name(i) for i in range(run.served_adapters) if run.adapter_level(i) == level]
        assert len(names) == count
        total_rate = rate * count
        if run.dataset == "sharegpt":
            dataset = ["--dataset-name", "sharegpt", "--dataset-path", SHAREGPT_FILE]
        else:
            prompt, output = run.random_lengths
            dataset = ["--dataset-name", "random", "--random-input-len", str(prompt), "--random-output-len",
                       str(output), "--ignore-eos"]
        commands.append([
            "python3", CLIENT_SCRIPT, "--backend", "vllm", "--model", model, "--port", str(PORT),
            "--endpoint", "/v1/completions", *dataset,
            "--request-rate", f"{total_rate:.6g}", "--num-prompts", str(max(1, round(total_rate * run.duration_s))),
            "--seed", str(run.client_seed + client), "--disable-tqdm",
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
            "--save-result", "--result-dir", run_folder(run), "--result-filename", client_file(client),
            "--lora-modules", *names,
            "--metadata", f"{META_RUN}={run.run_id}", f"{META_RATES}={rate:g}", f"{META_COUNTS}={count}",
            f"{META_RANKS}={','.join(map(str, run.adapter_rank_cycle))}", f"{META_CLIENTS}={len(active)}",
        ])
    return commands


def run_folder(run: PlannedRun) -> str:
    return f"{run.flags.results_dir.rstrip('/')}/{run.run_id}"


def run_script(run: PlannedRun, model: str) -> str:
    """Bash for one run: start the server (log to the run's folder), wait until it answers or dies, run
    the clients in parallel, stop the server."""
    folder = shlex.quote(run_folder(run))
    lines = [
        f"# {run.run_id}: {run.purpose}",
        f"mkdir -p {folder}",
        f"{shlex.join(serve_command(run, model))} > {folder}/{SERVER_LOG} 2>&1 &",
        "server=$!",
        f"until curl -sf http://127.0.0.1:{PORT}/health > /dev/null; do kill -0 $server 2> /dev/null || break; "
        "sleep 5; done",
    ]
    pids = []
    for client, command in enumerate(client_commands(run, model)):
        lines.append(f"{shlex.join(command)} > {folder}/client-{client}.log 2>&1 &")
        lines.append(f"client{client}=$!")
        pids.append(f"$client{client}")
    lines += [f"wait {' '.join(pids)}", "kill $server; wait $server"]
    return "\n".join(lines)

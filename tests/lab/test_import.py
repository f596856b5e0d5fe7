"""Importing measured runs: vLLM 0.8.5 server logs and benchmark result files into runs-table rows.

The fixtures in tests/fixtures/lab are written to the documented formats (benchmark_serving.py's result
keys, the server's log lines; see loratwin.lab.bench_json and loratwin.lab.server_log); their numbers
are made up, their statistics computed from their per-request lists as vLLM computes them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import InputError
from loratwin.lab.bench_json import rank_cycle, read_bench_json
from loratwin.lab.importer import import_run, import_runs, write_kv_csv, write_runs_csv
from loratwin.lab.server_log import read_server_log
from loratwin.validate import load_runs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lab"


def copy_run(tmp_path: Path, name: str = "run-ok") -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    return folder


def test_the_server_log_gives_the_flags_and_the_kv_capacity():
    facts = read_server_log(FIXTURES / "run-ok" / "server.log")
    assert (facts.model, facts.vllm_version) == ("meta-llama/Llama-3.1-8B-Instruct", "0.8.5")
    assert (facts.max_loras, facts.max_lora_rank, facts.max_cpu_loras) == (4, 16, 12)
    assert (facts.max_num_seqs, facts.max_num_batched_tokens, facts.max_model_len) == (2048, 2048, 4096)
    assert facts.gpu_memory_utilization == 0.9 and facts.model_load_gib == 15.6182
    assert facts.lora_modules[1] == ("lora-1", "./adapters/rank-16/adapter-000") and facts.served_adapters == 12
    assert (facts.kv_cache_tokens, facts.max_concurrency, facts.failure) == (296_000, 72.27, None)
    oom = read_server_log(FIXTURES / "run-oom" / "server.log")
    assert (oom.kv_cache_tokens, oom.failure, oom.served_adapters) == (None, "no_memory_left_for_kv_cache", 224)


def test_defaults_left_to_vllm_are_read_where_the_log_states_them(tmp_path):
    text = (FIXTURES / "run-ok" / "server.log").read_text()
    text = text.replace("max_cpu_loras=12", "max_cpu_loras=None").replace("max_num_batched_tokens=2048,", "max_num_batched_tokens=None,")
    text = text.replace("max_model_len=4096", "max_model_len=None")
    (tmp_path / "server.log").write_text(text)
    facts = read_server_log(tmp_path / "server.log")
    # vLLM: --max-cpu-loras defaults to --max-loras; the budget and length from their own log lines
    assert (facts.max_cpu_loras, facts.max_num_batched_tokens, facts.max_model_len) == (4, 2048, 4096)


def test_later_vllms_non_default_args_are_read_too(tmp_path):
    line = ("INFO 06-01 10:00:00 [api_server.py:1395] non-default args: {'model_tag': 'Qwen/Qwen2.5-7B-Instruct', "
            "'lora_modules': [LoRAModulePath(name='a', path='/ad/a', base_model_name=None)], 'max_model_len': 4096, "
            "'enable_prefix_caching': False, 'gpu_memory_utilization': 0.85, 'max_num_batched_tokens': 4096, "
            "'max_num_seqs': 256, 'enable_lora': True, 'max_loras': 1, 'max_lora_rank': 8}\n"
            "INFO 06-01 10:01:00 [kv_cache_utils.py:716] GPU KV cache size: 1,234,560 tokens\n")
    (tmp_path / "server.log").write_text(line)
    facts = read_server_log(tmp_path / "server.log")
    assert (facts.model, facts.max_loras, facts.max_cpu_loras, facts.max_num_seqs) == ("Qwen/Qwen2.5-7B-Instruct", 1, 1, 256)
    assert (facts.gpu_memory_utilization, facts.kv_cache_tokens, facts.served_adapters) == (0.85, 1_234_560, 1)


def expected_stats(files: list[Path]) -> dict[str, float]:
    """The merged statistics, recomputed here from the files' per-request lists."""
    ttft, tpot, itl = [], [], []
    for path in files:
        doc = json.loads(path.read_text())
        for t, gaps, out, err in zip(doc["ttfts"], doc["itls"], doc["output_lens"], doc["errors"], strict=True):
            if err:
                continue
            ttft.append(t * 1000)
            itl += [g * 1000 for g in gaps]
            if out > 1:
                tpot.append(sum(gaps) * 1000 / (out - 1))
    stats = {}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl)):
        stats |= {f"mean_{name}_ms": np.mean(values), f"median_{name}_ms": np.median(values),
                  f"p99_{name}_ms": np.percentile(values, 99)}
    return stats


def test_a_run_of_three_clients_merges_into_one_row(tmp_path):
    row = import_run(FIXTURES / "run-ok", "lab")
    files = sorted((FIXTURES / "run-ok").glob("client-*.json"))
    docs = [json.loads(p.read_text()) for p in files]
    assert row["run_id"] == "07-in-use-12" and row["source_set"] == "lab" and row["status"] == "ok"
    assert row["model"] == "llama-3.1-8b-instruct"
    assert (row["rate_values"], row["rate_counts"], row["adapter_rank_cycle"]) == ("0.05 0.1 0.2", "4 4 4", "8 16")
    assert row["aggregate_rate_req_s"] == pytest.approx(1.4)
    assert row["completed"] == sum(d["completed"] for d in docs) == 41
    assert row["duration_s"] == max(d["duration"] for d in docs)
    total = sum(d["total_input_tokens"] + d["total_output_tokens"] for d in docs)
    assert row["total_tok_s"] == pytest.approx(total / row["duration_s"])
    for key, value in expected_stats(files).items():
        assert row[key] == pytest.approx(value), key
    assert row["kv_cache_tokens"] == row["kv_cache_tokens_lookup"] == 296_000
    assert row["pool_prompts"] == row["client_sent_requests"] == 42
    assert row["configured_time_s"] == pytest.approx(30)


def test_one_result_file_keeps_its_own_statistics():
    only = FIXTURES / "run-ok" / "client-2.json"
    doc = json.loads(only.read_text())
    result = read_bench_json(only)
    assert result.values["p99_ttft_ms"] == doc["p99_ttft_ms"] and result.metadata["loratwin_rate_values"] == "0.2"
    assert result.has_lists and len(result.lists["itls"]) == 24


def test_imported_rows_are_a_runs_table_validate_reads(tmp_path):
    rows = import_runs([FIXTURES / "run-ok", FIXTURES / "run-oom"])
    write_runs_csv(rows, tmp_path / "runs.csv")
    write_kv_csv(rows, tmp_path / "kv.csv")
    ok, oom = load_runs(tmp_path / "runs.csv")
    assert (ok.status, ok.max_loras, ok.served_adapters, ok.rank_cycle, ok.rate_counts) == ("ok", 4, 12, (8, 16), (4, 4, 4))
    assert ok.measured["total_tok_s"] == pytest.approx(rows[0]["total_tok_s"])
    assert (oom.status, oom.started, oom.max_loras, oom.max_lora_rank) == ("oom_at_start", False, 224, 32)
    kv = (tmp_path / "kv.csv").read_text().splitlines()
    assert kv[0].startswith("model,experiment_id,max_loras,max_lora_rank")
    assert kv[1].split(",")[6:9] == ["296000", "1", ""] and kv[2].split(",")[6:9] == ["", "0", "no_memory_left_for_kv_cache"]


def test_reference_columns_are_the_reference_header_and_cover_what_validate_reads():
    from loratwin.lab.runs_table import COLUMNS, REFERENCE_COLUMNS
    from loratwin.validate.runs import MEASURED_FLOATS, REQUIRED_COLUMNS

    # validate reads the reference columns and what an import adds (the KV capacity a run logged)
    assert set(REQUIRED_COLUMNS) | set(MEASURED_FLOATS) <= set(COLUMNS)
    reference = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-vllm" / "runs.csv"
    if reference.exists():
        assert tuple(reference.open().readline().strip().split(",")) == REFERENCE_COLUMNS


def test_rank_cycles_are_the_shortest_with_the_proportions():
    assert rank_cycle({8: 6, 16: 6}) == [8, 16] and rank_cycle({8: 8, 32: 4}) == [8, 8, 32] and rank_cycle({16: 5}) == [16]


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: _edit(f / "client-1.json", lambda d: d.pop("total_token_throughput")),
     "client-1.json: missing keys total_token_throughput; expected a benchmark result JSON"),
    (lambda f: (f / "server.log").write_text((f / "server.log").read_text().replace("GPU KV cache size", "KV size")),
     "server.log: no 'GPU KV cache size: N tokens' line"),
    (lambda f: _edit(f / "client-2.json", lambda d: d.update(loratwin_run="08-other")),
     "client-2.json: loratwin_run '08-other' differs from '07-in-use-12' in client-0.json"),
    (lambda f: _edit(f / "client-2.json", lambda d: d.update(model_id="Qwen/Qwen2.5-7B-Instruct")),
     "client-2.json: model_id 'Qwen/Qwen2.5-7B-Instruct' is not the model of"),
    (lambda f: _edit(f / "client-0.json", lambda d: d.update(loratwin_clients="4")),
     "3 result files, but their loratwin_clients says the run had 4 clients"),
    (lambda f: _edit(f / "client-0.json", lambda d: d.update(loratwin_rate_counts="9", request_rate=0.45)),
     "client-2.json: loratwin_rate_counts add up to 17 adapters over the run's result files, but"),
    (lambda f: _edit(f / "client-0.json", lambda d: d.update(request_rate=5.0)),
     "client-0.json: loratwin_rate_values x loratwin_rate_counts give 0.2 req/s, but request_rate is 5"),
    (lambda f: _edit(f / "client-1.json", lambda d: d.update(duration="long")),
     "client-1.json: duration must be a number from 0 to 1e+12, got 'long'"),
    (lambda f: _edit(f / "client-1.json", lambda d: d.update(ttfts=[str(t) for t in d["ttfts"]])),
     "client-1.json: ttfts[0] must be a time in s from 0 to 86400, got '"),
    (lambda f: _edit(f / "client-1.json", lambda d: d.update(itls=[[None]] * len(d["itls"]))),
     "client-1.json: itls[0][0] must be a time in s from 0 to 86400, got None"),
    (lambda f: _edit(f / "client-1.json", lambda d: d.update(itls=[None] * len(d["itls"]))),
     "client-1.json: itls[0] must be a list of inter-token gaps in s, got None"),
    (lambda f: _edit(f / "client-1.json", lambda d: d["ttfts"].__setitem__(1, 1e308)),
     "client-1.json: ttfts[1] must be a time in s from 0 to 86400, got 1e+308"),
    (lambda f: _edit(f / "client-1.json", lambda d: d.update(mean_ttft_ms=1e308)),
     "client-1.json: mean_ttft_ms must be a number from 0 to 1e+12, got 1e+308"),
    (lambda f: _edit(f / "client-1.json", lambda d: d["output_lens"].__setitem__(0, 2.5)),
     "client-1.json: output_lens[0] must be a whole number of tokens from 0 to 1e+12, got 2.5"),
    (lambda f: (f / "server.log").write_text((f / "server.log").read_text().replace("max_loras=4", "max_loras='abc'")),
     "server.log: the server's arguments: max_loras must be a whole number >= 1, got 'abc'"),
    (lambda f: (f / "server.log").write_text((f / "server.log").read_text().replace("max_loras=4", "max_loras=0")),
     "server.log: the server's arguments: max_loras must be a whole number >= 1, got 0"),
    (lambda f: (f / "server.log").write_text((f / "server.log").read_text().replace("296,000 tokens", "-5 tokens")),
     "server.log: 'GPU KV cache size: -5 tokens': expected a token count from 1 to 1,000,000,000"),
    (lambda f: (f / "client-1.json").write_text("{\"duration\": "),
     "client-1.json: line 1, column 14: invalid JSON"),
    (lambda f: _edit(f / "client-1.json", lambda d: d["ttfts"].pop()),
     "client-1.json: ttfts must be a list with one entry per request"),
    (lambda f: (f / "server.log").unlink(), "server.log does not exist; expected a vLLM server log"),
    (lambda f: [p.unlink() for p in f.glob("*.json")], "no result JSON file, and"),
    (lambda f: (f / "server.log").write_text("INFO starting\n"), "server.log: no 'args: Namespace(...)' line"),
    (lambda f: (f / "server.log").write_text((f / "server.log").read_text().replace("max_num_seqs=2048", "max_num_seqs=None")),
     "the server's arguments hold no max_num_seqs (--max-num-seqs)"),
])
def test_bad_runs_name_the_file_and_field(tmp_path, change, message):
    folder = copy_run(tmp_path)
    change(folder)
    with pytest.raises(InputError) as err:
        import_run(folder, "imported")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_run_given_twice_is_refused(tmp_path):
    with pytest.raises(InputError, match="run '07-in-use-12' is also in"):
        import_runs([FIXTURES / "run-ok", copy_run(tmp_path)])


def test_ranks_come_from_the_adapters_when_the_files_do_not_say(tmp_path):
    folder = copy_run(tmp_path)
    for path in folder.glob("client-*.json"):
        _edit(path, lambda d: d.pop("loratwin_rank_cycle"))
    with pytest.raises(InputError, match="the adapters' ranks are unknown.*adapter-000/adapter_config.json"):
        import_run(folder, "imported")
    log = folder / "server.log"
    for rank in (8, 16):
        for i in range(6):
            adapter = tmp_path / "adapters" / f"rank-{rank}" / f"adapter-{i:03d}"
            adapter.mkdir(parents=True)
            (adapter / "adapter_config.json").write_text(json.dumps({"r": rank}))
    log.write_text(log.read_text().replace("'./adapters/", f"'{tmp_path}/adapters/"))
    assert import_run(folder, "imported")["adapter_rank_cycle"] == "8 16"

"""The lab side of calibration: plan real vLLM 0.8.5 runs, make adapters for them, read their results.

* `plan.plan_experiments(arch, gpu, flags) -> list[PlannedRun]`: the short list of runs that identifies
  each term of a profile, each in the terms of a runs.csv row (capacity.py sizes it roughly);
* `commands`: the `vllm serve` and benchmark-client command lines of a planned run;
* `adapters`: random-weight LoRA adapters in the PEFT layout (safetensors.py writes the weights);
* `bench_json`: the keys of vLLM's benchmark result file, read for real runs and written for simulated ones;
* `server_log`, `runs_table`, `importer`: server logs and result files into runs-table rows.

Modules are imported by name (`from loratwin.lab.plan import plan_experiments`): this package imports none
of them, so each command loads only what it uses.
"""

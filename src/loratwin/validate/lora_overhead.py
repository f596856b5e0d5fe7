"""The LoRA-overhead calibration runs (calibration/lora_overhead.csv) as step-time equations.

Each `restricted_adapters` run (max_loras 300, max_lora_rank 8, about 200 running requests, 1 to
300 adapters in use, decode-heavy: 1-word prompts) holds its batch near steady state, so its mean
ITL is one engine step: the profile's compute at the run's mean batch plus the measured scheduler
time. The row's values:
- running N: `mean_running`;
- prompt tokens per step P: `mean_batched_tokens` - N, where the server logged batched tokens;
  otherwise the median logged `mean_batched_tokens` of the runs with the same model, max_num_seqs
  and output length (that count is set by the batch cap and the prompt/output mix, not by the
  adapters: it stays within 1 token across the logged adapter counts);
- scheduler time: `mean_scheduler_time_us` where logged, else the same median rule (it stays
  within 3 % across the logged adapter counts of a setting);
- context K: N x (prompt + output / 2), as the decode fit (`calibrate.fit_base_step`) takes it;
- distinct adapters A: `mean_unique_adapters_per_batch` where logged; otherwise the expected number
  of distinct adapters among the step's sequences, each on one of the adapters in use at random,
  U (1 - (1 - 1/U)^n), with n the sequences per step (batched tokens less the steady-state prompt
  tokens, N x prompt / output). On the logged runs that estimate is within 2.2 % of the logged count.

`twin_fit` adds these rows to the twin-in-the-loop fit as equations that need no replay;
scripts/check_lora_overhead.py prints the profile's step against them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from loratwin.errors import InputError
from loratwin.profiles.kv_capacity import Rank, Slots
from loratwin.validate.calibrate_files import NonNegative, PositiveMs, Row, number, rows_of
from loratwin.validate.replay import step_terms
from loratwin.validate.twin_fit import StepEquations

Positive = Annotated[float, Field(gt=0)]

LORA_OVERHEAD_FILE = "lora_overhead.csv"
LORA_OVERHEAD_COLUMNS = (
    "model", "status", "experiment_set", "max_num_seqs", "max_loras", "max_lora_rank", "adapters_in_use",
    "synthetic_output_tokens", "input_tokens", "output_tokens", "mean_running", "mean_batched_tokens",
    "mean_unique_adapters_per_batch", "mean_scheduler_time_us", "mean_itl_ms",
)


@dataclass(frozen=True)
class LoraOverheadRuns:
    """The restricted-adapter runs of one model, one entry per run (numpy arrays)."""

    lines: np.ndarray  # line numbers in the file
    running: np.ndarray
    prefill_tokens: np.ndarray
    context_tokens: np.ndarray
    adapters: np.ndarray
    adapters_logged: np.ndarray  # bool: A was logged (else estimated)
    adapters_in_use: np.ndarray
    max_loras: np.ndarray
    max_lora_rank: np.ndarray
    scheduler_ms: np.ndarray  # measured mean scheduler time per step
    itl_ms: np.ndarray  # measured mean ITL

    def __len__(self) -> int:
        return len(self.itl_ms)

    def terms(self) -> np.ndarray:
        """Per run, the value multiplying each additive step-time coefficient (runs x STEP_TERM_FIELDS)."""
        steps = {"batch": self.running, "adapters": self.adapters, "prefill_tokens": self.prefill_tokens,
                 "context_tokens": self.context_tokens}
        return step_terms(steps, self.max_loras, self.max_lora_rank).T

    def equations(self, weight: float) -> StepEquations:
        """The runs as equations of the twin-in-the-loop fit, each weighing like `weight` runs."""
        return StepEquations(terms=self.terms(), overhead_ms=self.scheduler_ms, step_ms=self.itl_ms, weight=weight)

    def predicted_itl_ms(self, profile) -> np.ndarray:
        """The profile's mean ITL at each run: its step compute plus the measured scheduler time."""
        cost = profile.step_cost(self.max_loras, self.max_lora_rank)
        compute = cost.compute_ms(self.running, self.prefill_tokens, self.context_tokens, self.adapters)
        return np.asarray(compute) + self.scheduler_ms


def _optional(row: Row, name: str, path: Path) -> float | None:
    return None if not (row[1].get(name) or "").strip() else number(row, name, path, NonNegative)


def expected_adapters(in_use: float, sequences: float) -> float:
    """Expected distinct adapters among `sequences` sequences, each on one of `in_use` adapters at random."""
    return in_use * (1 - (1 - 1 / in_use) ** sequences)


def read_lora_overhead(path: Path, model: str) -> LoraOverheadRuns:
    """The ok `restricted_adapters` runs of `model` in a lora_overhead.csv (see the module docstring)."""
    table = [r for r in rows_of(path, LORA_OVERHEAD_COLUMNS, model)
             if r[1].get("status") == "ok" and r[1].get("experiment_set") == "restricted_adapters"]
    if not table:
        raise InputError(f"{path}: no ok restricted_adapters rows for model {model!r}")
    batched = _logged_or_median(table, "mean_batched_tokens", path)
    scheduler_us = _logged_or_median(table, "mean_scheduler_time_us", path)
    out: dict[str, list] = defaultdict(list)
    for r, batched_tokens, sched_us in zip(table, batched, scheduler_us, strict=True):
        n = number(r, "mean_running", path, Positive)
        prompt, output = number(r, "input_tokens", path, NonNegative), number(r, "output_tokens", path, Positive)
        in_use = number(r, "adapters_in_use", path, Slots)
        adapters = _optional(r, "mean_unique_adapters_per_batch", path)
        out["adapters_logged"].append(adapters is not None)
        if adapters is None:
            adapters = expected_adapters(in_use, max(1.0, batched_tokens - n * prompt / output))
        out["lines"].append(r[0])
        out["running"].append(n)
        out["prefill_tokens"].append(max(0.0, batched_tokens - n))
        out["context_tokens"].append(n * (prompt + output / 2))
        out["adapters"].append(adapters)
        out["adapters_in_use"].append(in_use)
        out["max_loras"].append(number(r, "max_loras", path, Slots))
        out["max_lora_rank"].append(number(r, "max_lora_rank", path, Rank))
        out["scheduler_ms"].append(sched_us / 1000)
        out["itl_ms"].append(number(r, "mean_itl_ms", path, PositiveMs))
    return LoraOverheadRuns(**{k: np.array(v) for k, v in out.items()})


def _logged_or_median(table: list[Row], name: str, path: Path) -> list[float]:
    """Column `name` of each row; where empty (no server log), the median of the logged values of
    the rows with the same model, max_num_seqs and output length."""
    def setting(row: Row) -> tuple:
        return row[1].get("max_num_seqs"), row[1].get("synthetic_output_tokens")

    values = [_optional(r, name, path) for r in table]
    logged: dict[tuple, list[float]] = defaultdict(list)
    for r, v in zip(table, values, strict=True):
        if v is not None:
            logged[setting(r)].append(v)
    filled = []
    for r, v in zip(table, values, strict=True):
        if v is None:
            if not logged.get(setting(r)):
                raise InputError(f"{path} line {r[0]}: {name}: empty, and no run with the same model, max_num_seqs "
                                 "and synthetic_output_tokens logged it (expected a number)")
            v = float(np.median(logged[setting(r)]))
        filled.append(v)
    return filled

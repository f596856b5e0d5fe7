"""Request tables: the arrivals a replica sees, one row per request, as columns of numpy arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loratwin.errors import InputError
from loratwin.workload.arrivals import generate_arrivals
from loratwin.workload.length_tables import resolve_table, sample_from_table
from loratwin.workload.lengths import sample_lengths
from loratwin.workload.spec import ShareGPTLengths, WorkloadSpec

__all__ = ["RequestTable", "generate_requests"]


# eq=False: element-wise array comparison makes a generated __eq__ meaningless.
@dataclass(frozen=True, eq=False)
class RequestTable:
    """Requests in arrival order.

    `adapter` holds positions in the workload's `adapters` (see `WorkloadSpec.adapter_index`).
    """

    arrival_s: np.ndarray  # float64, ascending
    adapter: np.ndarray  # int32
    prompt_tokens: np.ndarray  # int32
    output_tokens: np.ndarray  # int32

    def __post_init__(self) -> None:
        columns = {
            "arrival_s": np.float64,
            "adapter": np.int32,
            "prompt_tokens": np.int32,
            "output_tokens": np.int32,
        }
        for name, dtype in columns.items():
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        lengths = {name: getattr(self, name).shape for name in columns}
        if any(len(shape) != 1 for shape in lengths.values()) or len(set(lengths.values())) != 1:
            raise ValueError(f"RequestTable columns must be 1-D and of equal length, got shapes {lengths}")

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def offered_tokens(self) -> int:
        """All prompt and output tokens the requests ask for."""
        return int(self.prompt_tokens.sum(dtype=np.int64) + self.output_tokens.sum(dtype=np.int64))


def generate_requests(
    workload: WorkloadSpec, duration_s: float, seed: int, model_name: str | None = None
) -> RequestTable:
    """Arrivals over [0, duration_s), each adapter following its own arrival process, with lengths
    from the workload (ShareGPT lengths use `model_name`'s tokenizer table unless the workload
    names one).

    One generator seeded with `seed` is consumed in a fixed order (arrivals, see
    `loratwin.workload.arrivals.generate_arrivals`, then lengths), so a seed fixes the table.
    Simultaneous arrivals keep adapter order.
    """
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float, np.integer, np.floating)):
        raise InputError(f"duration_s: must be a number of seconds > 0, got {duration_s!r}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"duration_s: must be a finite number of seconds > 0, got {duration_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    arrival_s, adapter = generate_arrivals(workload, float(duration_s), rng)
    if isinstance(workload.lengths, ShareGPTLengths):
        table = resolve_table(workload.lengths.table, model_name)
        prompt_tokens, output_tokens = sample_from_table(table, len(arrival_s), rng)
    else:
        prompt_tokens, output_tokens = sample_lengths(workload.lengths, len(arrival_s), rng)
    return RequestTable(
        arrival_s=arrival_s,
        adapter=adapter,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )

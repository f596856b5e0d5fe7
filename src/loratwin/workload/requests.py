"""Request tables: the arrivals a replica sees, one row per request, as columns of numpy arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loratwin.errors import InputError
from loratwin.workload.lengths import sample_lengths
from loratwin.workload.spec import WorkloadSpec

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


def generate_requests(workload: WorkloadSpec, duration_s: float, seed: int) -> RequestTable:
    """Poisson arrivals per adapter over [0, duration_s), with lengths from the workload.

    Conditioned on its count (Poisson with mean rate x duration), a Poisson process's arrival
    times are independent uniforms over the window: that draws every adapter's arrivals in one
    vectorised call. The generator is consumed in a fixed order (counts for all adapters in
    adapter order, then arrival times adapter by adapter, then lengths), so a seed fixes the table.
    Simultaneous arrivals keep adapter order.
    """
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float, np.integer, np.floating)):
        raise InputError(f"duration_s: must be a number of seconds > 0, got {duration_s!r}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise InputError(f"duration_s: must be a finite number of seconds > 0, got {duration_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: must be an integer >= 0, got {seed!r}")
    duration_s = float(duration_s)
    rng = np.random.default_rng(int(seed))

    rates = np.array([adapter.rate_req_s for adapter in workload.adapters], dtype=np.float64)
    counts = rng.poisson(rates * duration_s)
    arrival_s = rng.uniform(0.0, duration_s, int(counts.sum()))
    # uniform() may round up to the upper bound; the window is half-open.
    np.minimum(arrival_s, np.nextafter(duration_s, 0.0), out=arrival_s)
    adapter = np.repeat(np.arange(len(rates), dtype=np.int32), counts)

    # Stable: equal times keep the block order, i.e. the lower adapter index first.
    order = np.argsort(arrival_s, kind="stable")
    prompt_tokens, output_tokens = sample_lengths(workload.lengths, len(order), rng)
    return RequestTable(
        arrival_s=arrival_s[order],
        adapter=adapter[order],
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )

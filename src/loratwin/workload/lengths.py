"""Request lengths: truncated log-normal prompts and outputs with ShareGPT-like means.

The reference client kept only ShareGPT pairs with prompt >= 4, output >= 4, prompt <= 1024 and
prompt + output <= 2048. We mimic that: draw independent log-normal prompt and output lengths,
round to whole tokens, and reject pairs outside the bounds. Rejection lowers the means, so the
log-normal locations (mu) are solved once per spec so that the means *after* truncation hit the
targets; those means are computed exactly from the rounded distributions, not estimated by sampling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loratwin.errors import InputError
from loratwin.workload.length_tables import load_length_table
from loratwin.workload.spec import LengthSpec, ShareGPTLengths

__all__ = ["OUTPUT_SIGMA", "PROMPT_SIGMA", "check_length_spec", "sample_lengths"]

# Log-space spreads, close to the ShareGPT length distributions.
PROMPT_SIGMA = 1.0
OUTPUT_SIGMA = 0.9

# Below this share of accepted pairs, rejection sampling would crawl: the bounds are unreasonable.
_MIN_ACCEPTANCE = 1e-3
_SOLVE_TOLERANCE = 1e-4
# Token counts further than this many sigmas (log space) from the median carry no probability
# worth computing; skipping them keeps the solve fast for large bounds.
_TAIL_SIGMAS = 9.0


@dataclass(frozen=True)
class _FittedLogNormals:
    prompt_mu: float
    output_mu: float
    acceptance: float  # share of raw pairs that pass the bounds


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF, vectorised (Abramowitz & Stegun 7.1.26 erf, error < 1.5e-7)."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    polynomial = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - polynomial * np.exp(-x * x)
    return 0.5 * (1.0 + np.copysign(erf, z))


def _rounded_lognormal_pmf(mu: float, sigma: float, lowest: int, highest: int) -> tuple[np.ndarray, np.ndarray]:
    """Token counts in [lowest, highest] and their probabilities under rint(log-normal(mu, sigma))."""
    lowest = max(lowest, math.floor(math.exp(mu - _TAIL_SIGMAS * sigma)))
    highest = min(highest, math.ceil(math.exp(min(mu + _TAIL_SIGMAS * sigma, 700.0))))
    if lowest > highest:
        return np.empty(0), np.empty(0)
    tokens = np.arange(lowest, highest + 1, dtype=np.float64)
    edges = np.log(np.append(tokens - 0.5, highest + 0.5))
    return tokens, np.diff(_normal_cdf((edges - mu) / sigma))


def _truncated_means(spec: LengthSpec, prompt_mu: float, output_mu: float) -> tuple[float, float, float]:
    """Exact mean prompt, mean output and acceptance of the rounded, bounded pairs."""
    prompts, prompt_pmf = _rounded_lognormal_pmf(prompt_mu, PROMPT_SIGMA, spec.min_tokens, spec.max_prompt_tokens)
    outputs, output_pmf = _rounded_lognormal_pmf(
        output_mu, OUTPUT_SIGMA, spec.min_tokens, spec.max_total_tokens - spec.min_tokens
    )
    if prompts.size == 0 or outputs.size == 0:
        return math.nan, math.nan, 0.0
    # A prompt of k tokens accepts the outputs up to max_total - k: a prefix of the ascending outputs.
    output_mass = np.concatenate(([0.0], np.cumsum(output_pmf)))
    output_tokens = np.concatenate(([0.0], np.cumsum(outputs * output_pmf)))
    prefix = np.clip(spec.max_total_tokens - prompts - outputs[0] + 1, 0, outputs.size).astype(np.int64)
    pair_mass = prompt_pmf * output_mass[prefix]
    acceptance = float(pair_mass.sum())
    if acceptance <= 0.0:
        return math.nan, math.nan, 0.0
    return (
        float((prompts * pair_mass).sum() / acceptance),
        float((prompt_pmf * output_tokens[prefix]).sum() / acceptance),
        acceptance,
    )


def _bisect_mu(target: float, lowest: float, highest: float, mean_at: Callable[[float], float]) -> float:
    """The mu whose truncated mean equals `target` (the mean grows with mu)."""
    low, high = lowest, highest
    for _ in range(44):
        middle = 0.5 * (low + high)
        mean = mean_at(middle)
        # No accepted pairs: mu is so far out that the whole mass is beyond one bound.
        too_low = middle < 0.5 * (lowest + highest) if math.isnan(mean) else mean < target
        if too_low:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


@functools.lru_cache(maxsize=64)
def _fit(spec: LengthSpec) -> _FittedLogNormals:
    # Start from the untruncated log-normal (mean = exp(mu + sigma^2 / 2)), then alternate
    # one-dimensional solves: each mean depends mostly on its own mu, a little on the other's
    # through the prompt + output bound, so this converges in a few rounds.
    prompt_mu = math.log(spec.mean_prompt_tokens) - PROMPT_SIGMA**2 / 2
    output_mu = math.log(spec.mean_output_tokens) - OUTPUT_SIGMA**2 / 2
    prompt_range = (math.log(spec.min_tokens) - 4 * PROMPT_SIGMA, math.log(spec.max_prompt_tokens) + 4 * PROMPT_SIGMA)
    output_range = (math.log(spec.min_tokens) - 4 * OUTPUT_SIGMA, math.log(spec.max_total_tokens) + 4 * OUTPUT_SIGMA)

    for _ in range(30):
        prompt_mu = _bisect_mu(
            spec.mean_prompt_tokens, *prompt_range, lambda mu, output_mu=output_mu: _truncated_means(spec, mu, output_mu)[0]
        )
        output_mu = _bisect_mu(
            spec.mean_output_tokens, *output_range, lambda mu, prompt_mu=prompt_mu: _truncated_means(spec, prompt_mu, mu)[1]
        )
        mean_prompt, mean_output, acceptance = _truncated_means(spec, prompt_mu, output_mu)
        if _close(mean_prompt, spec.mean_prompt_tokens) and _close(mean_output, spec.mean_output_tokens):
            break

    mean_prompt, mean_output, acceptance = _truncated_means(spec, prompt_mu, output_mu)
    if not (
        _close(mean_prompt, spec.mean_prompt_tokens, 2e-3) and _close(mean_output, spec.mean_output_tokens, 2e-3)
    ):
        raise InputError(
            f"lengths: mean_prompt_tokens={spec.mean_prompt_tokens:g} and mean_output_tokens="
            f"{spec.mean_output_tokens:g} cannot both be reached with min_tokens={spec.min_tokens}, "
            f"max_prompt_tokens={spec.max_prompt_tokens}, max_total_tokens={spec.max_total_tokens} "
            f"(closest: {mean_prompt:.1f}/{mean_output:.1f}); lower the means or widen the bounds"
        )
    if acceptance < _MIN_ACCEPTANCE:
        raise InputError(
            f"lengths: the bounds min_tokens={spec.min_tokens}, max_prompt_tokens={spec.max_prompt_tokens}, "
            f"max_total_tokens={spec.max_total_tokens} reject {100 * (1 - acceptance):.2f}% of draws "
            f"for these means; widen the bounds or move the means away from them"
        )
    return _FittedLogNormals(prompt_mu, output_mu, acceptance)


def _close(value: float, target: float, tolerance: float = _SOLVE_TOLERANCE) -> bool:
    return not math.isnan(value) and abs(value - target) <= tolerance * target


def check_length_spec(spec: LengthSpec | ShareGPTLengths) -> None:
    """Raise `InputError` if the spec's means cannot be reached within its bounds, or it names a
    length table that does not exist."""
    if isinstance(spec, ShareGPTLengths):
        if spec.table is not None:
            load_length_table(spec.table)
        return
    _fit(spec)


def sample_lengths(spec: LengthSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` (prompt, output) token counts as two int32 arrays, all inside the spec's bounds.

    Deterministic for a given generator state; consumes the generator in batches.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fitted = _fit(spec)
    prompt_parts: list[np.ndarray] = []
    output_parts: list[np.ndarray] = []
    missing = n
    while missing > 0:
        # Oversample a little so one batch nearly always suffices.
        batch = int(missing / fitted.acceptance * 1.05) + 64
        prompts = np.rint(rng.lognormal(fitted.prompt_mu, PROMPT_SIGMA, batch))
        outputs = np.rint(rng.lognormal(fitted.output_mu, OUTPUT_SIGMA, batch))
        keep = (
            (prompts >= spec.min_tokens)
            & (outputs >= spec.min_tokens)
            & (prompts <= spec.max_prompt_tokens)
            & (prompts + outputs <= spec.max_total_tokens)
        )
        prompts, outputs = prompts[keep][:missing], outputs[keep][:missing]
        prompt_parts.append(prompts.astype(np.int32))
        output_parts.append(outputs.astype(np.int32))
        missing -= len(prompts)
    if not prompt_parts:
        return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int32)
    return np.concatenate(prompt_parts), np.concatenate(output_parts)

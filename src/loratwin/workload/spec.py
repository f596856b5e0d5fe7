"""Workload specifications: which adapters exist, how often each is asked for, how long requests are.

A workload is data, validated at the boundary: every mistake in a YAML file or a flag becomes an
`InputError` naming the file or flag, the field and what was expected.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from loratwin import budget
from loratwin.errors import InputError

__all__ = [
    "ARRIVAL_KINDS",
    "AdapterSpec",
    "ArrivalSpec",
    "GammaArrival",
    "LengthSpec",
    "PoissonArrival",
    "ScheduleSegment",
    "UnpredictableArrival",
    "WorkloadSpec",
    "adapter_id_problem",
    "check_adapter_id",
    "describe_validation_error",
    "reference_layout",
    "zipf_layout",
]

NonNegativeRate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# An adapter's rate (or a layout's) above a billion requests per second is a mistake, beyond any
# deployment, and its sums and products overflow the planner's float arithmetic (1e308).
MAX_RATE_REQ_S = 1e9
RATE_WORDS = "a number from 0 to 1e9 (req/s)"
Rate = Annotated[float, Field(ge=0, le=MAX_RATE_REQ_S, allow_inf_nan=False)]
PositiveTokens = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _SpecModel(BaseModel):
    """Immutable and closed: an unknown key is an error, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- arrival processes ------------------------------------------------------------------------


class ScheduleSegment(_SpecModel):
    """A piece of a piecewise-constant rate schedule: up to `until_s`, the rate is multiplied by `scale`.

    A piece starts where the previous one ends (the first at 0 s); the last piece extends to the
    end of the run, so its `until_s` may be left out.
    """

    until_s: PositiveNumber | None = None
    scale: NonNegativeRate


def _check_schedule(segments: tuple[ScheduleSegment, ...]) -> tuple[ScheduleSegment, ...]:
    for position, segment in enumerate(segments[:-1]):
        if segment.until_s is None:
            raise ValueError(
                f"[{position}].until_s is required: only the last segment may leave it out (it extends to the end)"
            )
    for position in range(1, len(segments)):
        previous, current = segments[position - 1].until_s, segments[position].until_s
        assert previous is not None
        if current is not None and current <= previous:
            raise ValueError(
                f"until_s must increase from one segment to the next, got {current:g} at [{position}] "
                f"after {previous:g} at [{position - 1}]"
            )
    return segments


Schedule = Annotated[tuple[ScheduleSegment, ...], Field(min_length=1), AfterValidator(_check_schedule)]


class PoissonArrival(_SpecModel):
    """Poisson arrivals (exponential gaps) at the adapter's rate, optionally scaled by a schedule."""

    kind: Literal["poisson"] = "poisson"
    schedule: Schedule | None = None


class GammaArrival(_SpecModel):
    """Bursty arrivals: Gamma gaps with mean 1 / rate and coefficient of variation `cv` (1 is Poisson)."""

    kind: Literal["gamma"] = "gamma"
    # beyond these the Gamma draws degenerate (no arrival at all, or overflow)
    cv: Annotated[float, Field(ge=0.01, le=100, allow_inf_nan=False)]
    schedule: Schedule | None = None


class UnpredictableArrival(_SpecModel):
    """Every `period_s`, the gaps switch at random between exponential and log-normal (log-space spread
    `sigma`) and the rate is multiplied or divided by 1.5, starting from the adapter's rate and kept
    within 1/7.5 and 7.5 times it; a schedule scales that rate further."""

    kind: Literal["unpredictable"] = "unpredictable"
    period_s: PositiveNumber = 300.0
    sigma: PositiveNumber = 1.0
    schedule: Schedule | None = None


ARRIVAL_KINDS = ("poisson", "gamma", "unpredictable")


def _arrival_kind(value: Any) -> Any:
    # A mapping without `kind` is Poisson, so `arrival: {schedule: [...]}` reads naturally.
    if isinstance(value, dict):
        return value.get("kind", "poisson")
    return getattr(value, "kind", None)


def _kind_shorthand(value: Any) -> Any:
    # `arrival: unpredictable` stands for `arrival: {kind: unpredictable}`.
    return {"kind": value} if isinstance(value, str) else value


ArrivalSpec = Annotated[
    Annotated[PoissonArrival, Tag("poisson")]
    | Annotated[GammaArrival, Tag("gamma")]
    | Annotated[UnpredictableArrival, Tag("unpredictable")],
    Discriminator(_arrival_kind),
    BeforeValidator(_kind_shorthand),
]


class AdapterSpec(_SpecModel):
    """One LoRA adapter: its rank, its base arrival rate and (unless the workload's default) its process."""

    id: Annotated[str, Field(min_length=1)]
    rank: Annotated[int, Field(gt=0)]
    rate_req_s: Rate = 0.0
    arrival: ArrivalSpec | None = None  # None: the workload's `arrival`

    @field_validator("id")
    @classmethod
    def _usable_id(cls, adapter_id: str) -> str:
        problem = adapter_id_problem(adapter_id)
        if problem is not None:
            raise ValueError(problem)
        return adapter_id


class LengthSpec(_SpecModel):
    """Request lengths: a parametric stand-in for the ShareGPT pool of the reference runs.

    Prompt and output lengths are independent log-normals, truncated the way the reference client
    filtered ShareGPT (both >= `min_tokens`, prompt <= `max_prompt_tokens`, prompt + output <=
    `max_total_tokens`); the means are those of the truncated distribution.
    """

    kind: Literal["parametric"] = "parametric"
    mean_prompt_tokens: PositiveTokens = 223.0
    mean_output_tokens: PositiveTokens = 198.0
    min_tokens: Annotated[int, Field(ge=1)] = 4
    max_prompt_tokens: Annotated[int, Field(ge=1)] = 1024
    max_total_tokens: Annotated[int, Field(ge=2)] = 2048

    @model_validator(mode="after")
    def _means_inside_bounds(self) -> LengthSpec:
        # A truncated distribution's mean lies strictly inside its bounds; anything else can never
        # be reached, so say so here rather than fail later while sampling.
        if self.max_prompt_tokens < self.min_tokens:
            raise ValueError(
                f"max_prompt_tokens ({self.max_prompt_tokens}) must be >= min_tokens ({self.min_tokens})"
            )
        if self.max_total_tokens < 2 * self.min_tokens:
            raise ValueError(
                f"max_total_tokens ({self.max_total_tokens}) must be >= 2 x min_tokens ({2 * self.min_tokens})"
            )
        prompt_ceiling = min(self.max_prompt_tokens, self.max_total_tokens - self.min_tokens)
        if not self.min_tokens < self.mean_prompt_tokens < prompt_ceiling:
            raise ValueError(
                f"mean_prompt_tokens must lie strictly between min_tokens ({self.min_tokens}) and "
                f"{prompt_ceiling} (the largest prompt the bounds allow), got {self.mean_prompt_tokens:g}"
            )
        output_ceiling = self.max_total_tokens - self.min_tokens
        if not self.min_tokens < self.mean_output_tokens < output_ceiling:
            raise ValueError(
                f"mean_output_tokens must lie strictly between min_tokens ({self.min_tokens}) and "
                f"{output_ceiling} (max_total_tokens - min_tokens), got {self.mean_output_tokens:g}"
            )
        return self

    @property
    def name(self) -> str:
        return (
            f"parametric (log-normal, ShareGPT-like means "
            f"{self.mean_prompt_tokens:g}/{self.mean_output_tokens:g})"
        )


class ShareGPTLengths(_SpecModel):
    """Request lengths drawn from real ShareGPT conversations (first turn as the prompt, the
    reply as the output), counted with a model's tokenizer and filtered as the reference client
    did (both >= 4 tokens, prompt <= 1024, prompt + output <= 2048).

    `table` names the tokenizer's table (see `loratwin.workload.length_tables.available_tables`);
    None means the simulated model's own, or the Llama-3.1 table for a model without one.
    """

    kind: Literal["sharegpt"] = "sharegpt"
    table: str | None = None

    @property
    def name(self) -> str:
        return f"ShareGPT ({self.table or 'tokenizer of the simulated model'})"

    def means(self, model_name: str | None = None) -> tuple[float, float]:
        """Mean prompt and output tokens of the table used for `model_name`."""
        from loratwin.workload.length_tables import load_length_table, resolve_table

        prompt, output = load_length_table(resolve_table(self.table, model_name))
        return float(prompt.mean()), float(output.mean())


def _lengths_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "parametric"))
    return getattr(value, "kind", "parametric")


RequestLengths = Annotated[
    Annotated[LengthSpec, Tag("parametric")] | Annotated[ShareGPTLengths, Tag("sharegpt")],
    Discriminator(_lengths_kind),
]


class WorkloadSpec(_SpecModel):
    """The adapters a replica serves and the request lengths they send."""

    # A tuple, not a list, so the frozen spec is really immutable (and hashable).
    adapters: Annotated[tuple[AdapterSpec, ...], Field(min_length=1)]
    lengths: RequestLengths = ShareGPTLengths()
    arrival: ArrivalSpec = PoissonArrival()  # for adapters without their own

    @field_validator("adapters")
    @classmethod
    def _unique_ids(cls, adapters: tuple[AdapterSpec, ...]) -> tuple[AdapterSpec, ...]:
        first_seen: dict[str, int] = {}
        for position, adapter in enumerate(adapters):
            if adapter.id in first_seen:
                raise ValueError(
                    f"adapter ids must be unique, but {adapter.id!r} is used by "
                    f"adapters[{first_seen[adapter.id]}] and adapters[{position}]"
                )
            first_seen[adapter.id] = position
        return adapters

    @property
    def aggregate_rate_req_s(self) -> float:
        return math.fsum(adapter.rate_req_s for adapter in self.adapters)

    @property
    def max_rank(self) -> int:
        return max(adapter.rank for adapter in self.adapters)

    def adapter_index(self) -> dict[str, int]:
        """Adapter id -> position in `adapters` (the integer used in request tables)."""
        return {adapter.id: position for position, adapter in enumerate(self.adapters)}

    def arrivals(self) -> tuple[PoissonArrival | GammaArrival | UnpredictableArrival, ...]:
        """Each adapter's arrival process, in `adapters` order, the workload default filled in."""
        return tuple(adapter.arrival if adapter.arrival is not None else self.arrival for adapter in self.adapters)


def reference_layout(
    served: int,
    rates: Sequence[float],
    ranks: Sequence[int],
    seed: int,
    lengths: LengthSpec | ShareGPTLengths | None = None,
    arrival: ArrivalSpec | None = None,
) -> WorkloadSpec:
    """The adapter layout of the reference measurements.

    Adapter i (ids "lora-0" ... "lora-{served-1}") first gets `rates[i % len(rates)]` and
    `ranks[i % len(ranks)]`; then the rate assignment is shuffled over the adapters and,
    independently, so is the rank assignment (one generator seeded with `seed`: rates first).
    `arrival` is the process every adapter follows (Poisson when None).
    """
    served = _validated_served(served, "--served")
    rate_levels = _validated_levels(rates, "--rates", RATE_WORDS, _is_rate)
    rank_levels = _validated_levels(ranks, "--ranks", "an integer > 0", _is_rank)
    full_cycles, extra = divmod(served, len(rate_levels))
    _check_size(served, full_cycles * math.fsum(rate_levels) + math.fsum(rate_levels[:extra]))
    rng = np.random.default_rng(_validated_seed(seed, "--seed"))

    positions = np.arange(served)
    assigned_rates = np.asarray(rate_levels, dtype=np.float64)[positions % len(rate_levels)]
    assigned_ranks = np.asarray(rank_levels, dtype=np.int64)[positions % len(rank_levels)]
    rng.shuffle(assigned_rates)
    rng.shuffle(assigned_ranks)
    return _layout_workload(assigned_rates, assigned_ranks, lengths, arrival)


def zipf_layout(
    served: int,
    total_rate_req_s: float,
    exponent: float = 1.0,
    ranks: Sequence[int] = (8, 16),
    seed: int = 0,
    lengths: LengthSpec | ShareGPTLengths | None = None,
    arrival: ArrivalSpec | None = None,
) -> WorkloadSpec:
    """Skewed popularity: adapter i ("lora-i", the i-th most popular) gets a rate proportional to
    1 / (i + 1)^exponent, the rates summing to `total_rate_req_s` (exponent 0 is uniform).

    Ranks are assigned round-robin, then shuffled with a generator seeded with `seed`, so rank and
    popularity are unrelated.
    """
    served = _validated_served(served, "served")
    if not _is_rate(total_rate_req_s):
        raise InputError(f"total_rate_req_s: must be {RATE_WORDS}, got {total_rate_req_s!r}")
    if not _is_nonnegative(exponent):
        raise InputError(f"exponent: must be a number >= 0, got {exponent!r}")
    rank_levels = _validated_levels(ranks, "ranks", "an integer > 0", _is_rank)
    _check_size(served, float(total_rate_req_s))
    rng = np.random.default_rng(_validated_seed(seed, "seed"))

    positions = np.arange(served)
    weights = (positions + 1.0) ** -float(exponent)
    assigned_rates = float(total_rate_req_s) * weights / weights.sum()
    assigned_ranks = np.asarray(rank_levels, dtype=np.int64)[positions % len(rank_levels)]
    rng.shuffle(assigned_ranks)
    return _layout_workload(assigned_rates, assigned_ranks, lengths, arrival)


def _layout_workload(
    rates: np.ndarray, ranks: np.ndarray, lengths: LengthSpec | ShareGPTLengths | None, arrival: ArrivalSpec | None
) -> WorkloadSpec:
    adapters = tuple(
        AdapterSpec(id=f"lora-{i}", rank=int(ranks[i]), rate_req_s=float(rates[i])) for i in range(len(rates))
    )
    return WorkloadSpec(
        adapters=adapters,
        lengths=lengths if lengths is not None else ShareGPTLengths(),
        arrival=arrival if arrival is not None else PoissonArrival(),
    )


def _check_size(served: int, total_rate_req_s: float) -> None:
    """Refuse a layout too large for the memory limit before any adapter is built, priced for what
    the command does with it (base rates: schedules and drift are priced when requests are drawn)."""
    budget.require(budget.adapters_estimate(served, total_rate_req_s))


def _validated_served(served: object, flag: str) -> int:
    if isinstance(served, bool) or not isinstance(served, (int, np.integer)) or served < 1:
        raise InputError(f"{flag}: must be an integer >= 1, got {served!r}")
    return int(served)


def _validated_seed(seed: object, flag: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"{flag}: must be an integer >= 0, got {seed!r}")
    return int(seed)


def _is_nonnegative(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) >= 0
    )


def _is_rate(value: object) -> bool:
    """A rate in req/s: RATE_WORDS."""
    return _is_nonnegative(value) and float(value) <= MAX_RATE_REQ_S


_ID_FORBIDDEN = re.compile(r"[=,\s]")


def adapter_id_problem(adapter_id: str) -> str | None:
    """What is wrong with an adapter id (None if nothing): it must not be empty, and must hold no '=',
    ',' nor whitespace, since it names the adapter in vllm serve's --lora-modules NAME=PATH pairs
    (separated by spaces; vLLM splits NAME=PATH at '=' and lists at ',')."""
    if not adapter_id:
        return "adapter_id must not be empty"
    if _ID_FORBIDDEN.search(adapter_id):
        return (f"adapter_id must hold no '=', no ',' and no spaces (it names the adapter in "
                f"vllm serve --lora-modules NAME=PATH), got {adapter_id!r}")
    return None


def check_adapter_id(adapter_id: str, where: str) -> None:
    """An adapter id from a file, checked by `adapter_id_problem`. `where`: "FILE line N"."""
    problem = adapter_id_problem(adapter_id)
    if problem is not None:
        raise InputError(f"{where}: {problem}")


def _is_rank(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) > 0


def _validated_levels(
    levels: Sequence[Any], flag: str, expected: str, is_valid: typing.Callable[[object], bool]
) -> list[Any]:
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence | np.ndarray):
        raise InputError(f"{flag}: expected a list of values, each {expected}, got {levels!r}")
    values = list(levels)
    if not values:
        raise InputError(f"{flag}: expected at least one value, each {expected}, got none")
    for position, value in enumerate(values):
        if not is_valid(value):
            raise InputError(f"{flag}: value {position + 1} must be {expected}, got {value!r}")
    return values


def describe_validation_error(
    source: str, err: ValidationError, model: type[BaseModel] | None = None
) -> str:
    """One readable line per problem: `source: field.path[3].name: what was expected, got X`."""
    lines = []
    for problem in err.errors(include_url=False):
        location = _format_location(problem["loc"])
        if problem["type"] == "union_tag_invalid":
            location = f"{location}.kind" if location else "kind"
        message = _describe_problem(problem, model)
        lines.append(f"{source}: {location}: {message}" if location else f"{source}: {message}")
    return "\n".join(lines)


# Fields holding a union chosen by `kind`: pydantic puts the chosen kind into error locations,
# which names no key of the file, so it is left out.
_UNION_TAGS = {
    "arrival": frozenset(ARRIVAL_KINDS),
    "layout": frozenset({"reference", "zipf"}),
    "lengths": frozenset({"parametric", "sharegpt"}),
}


def _without_union_tags(location: tuple[int | str, ...]) -> tuple[int | str, ...]:
    kept: list[int | str] = []
    for part in location:
        if kept and isinstance(part, str) and part in _UNION_TAGS.get(str(kept[-1]), ()):
            continue
        kept.append(part)
    return tuple(kept)


def _format_location(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in _without_union_tags(location):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_TYPE_EXPECTATIONS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _describe_problem(problem: Any, model: type[BaseModel] | None) -> str:
    kind = problem["type"]
    context = problem.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, problem["loc"][:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown field{hint}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        operator = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(context.values()))
        message = f"must be {operator} {bound:g}" if isinstance(bound, (int, float)) else f"must be {operator} {bound}"
    elif kind == "too_short":
        message = f"must have at least {context.get('min_length', 1)} item(s)"
        if context.get("min_length") == 1:
            message = "must not be empty"
    elif kind == "literal_error":
        message = f"must be {context.get('expected')}"
    elif kind == "union_tag_invalid":
        return f"must be one of {context.get('expected_tags')}, got {context.get('tag')!r}"
    elif kind == "union_tag_not_found":
        message = "must be a mapping with a 'kind'"
    elif kind == "value_error":
        # Our own validators already phrase the full expectation.
        return str(context.get("error", problem["msg"]))
    elif kind in _TYPE_EXPECTATIONS:
        message = _TYPE_EXPECTATIONS[kind]
    else:
        message = problem["msg"][:1].lower() + problem["msg"][1:]
    value = problem.get("input")
    if isinstance(value, (dict, list, tuple)):
        return message
    return f"{message}, got {value!r}"


def _allowed_fields(model: type[BaseModel] | None, location: tuple[int | str, ...]) -> list[str]:
    """Field names of the model found at `location` inside `model` (empty if it cannot be told)."""
    candidates = _models_in(model)
    for part in location:
        if not candidates:
            return []
        if isinstance(part, int):
            continue  # already unwrapped to the item type of the list/tuple
        field = next((c.model_fields[part] for c in candidates if part in c.model_fields), None)
        if field is not None:
            candidates = _models_in(field.annotation)
            continue
        # A union tag: keep the member whose `kind` it names.
        candidates = [
            c for c in candidates if "kind" in c.model_fields and part in typing.get_args(c.model_fields["kind"].annotation)
        ]
        if len(candidates) != 1:
            return []
    return list(candidates[0].model_fields) if len(candidates) == 1 else []


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every model inside an annotation such as `X`, `X | Y | None`, `tuple[X, ...]` or `Annotated[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        found.extend(model for model in _models_in(argument) if model not in found)
    return found

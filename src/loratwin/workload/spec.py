"""Workload specifications: which adapters exist, how often each is asked for, how long requests are.

A workload is data, validated at the boundary: every mistake in a YAML file or a flag becomes an
`InputError` naming the file or flag, the field and what was expected.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loratwin.errors import InputError

__all__ = [
    "AdapterSpec",
    "LengthSpec",
    "WorkloadSpec",
    "describe_validation_error",
    "load_workload_yaml",
    "reference_layout",
]

NonNegativeRate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveTokens = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _SpecModel(BaseModel):
    """Immutable and closed: an unknown key is an error, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class AdapterSpec(_SpecModel):
    """One LoRA adapter: its rank and its Poisson arrival rate."""

    id: Annotated[str, Field(min_length=1)]
    rank: Annotated[int, Field(gt=0)]
    rate_req_s: NonNegativeRate = 0.0


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


class WorkloadSpec(_SpecModel):
    """The adapters a replica serves and the request lengths they send."""

    # A tuple, not a list, so the frozen spec is really immutable (and hashable).
    adapters: Annotated[tuple[AdapterSpec, ...], Field(min_length=1)]
    lengths: LengthSpec = LengthSpec()

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


def reference_layout(
    served: int,
    rates: Sequence[float],
    ranks: Sequence[int],
    seed: int,
    lengths: LengthSpec | None = None,
) -> WorkloadSpec:
    """The adapter layout of the reference measurements.

    Adapter i (ids "lora-0" ... "lora-{served-1}") first gets `rates[i % len(rates)]` and
    `ranks[i % len(ranks)]`; then the rate assignment is shuffled over the adapters and,
    independently, so is the rank assignment (one generator seeded with `seed`: rates first).
    """
    if isinstance(served, bool) or not isinstance(served, (int, np.integer)) or served < 1:
        raise InputError(f"--served: must be an integer >= 1, got {served!r}")
    served = int(served)
    rate_levels = _validated_levels(rates, "--rates", "a number >= 0 (req/s)", _is_rate)
    rank_levels = _validated_levels(ranks, "--ranks", "an integer > 0", _is_rank)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"--seed: must be an integer >= 0, got {seed!r}")

    positions = np.arange(served)
    assigned_rates = np.asarray(rate_levels, dtype=np.float64)[positions % len(rate_levels)]
    assigned_ranks = np.asarray(rank_levels, dtype=np.int64)[positions % len(rank_levels)]
    rng = np.random.default_rng(int(seed))
    rng.shuffle(assigned_rates)
    rng.shuffle(assigned_ranks)

    adapters = tuple(
        AdapterSpec(id=f"lora-{i}", rank=int(assigned_ranks[i]), rate_req_s=float(assigned_rates[i]))
        for i in range(served)
    )
    return WorkloadSpec(adapters=adapters, lengths=lengths if lengths is not None else LengthSpec())


def _is_rate(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) >= 0
    )


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


class _LayoutSection(_SpecModel):
    """The `layout:` form of a workload file, expanded through `reference_layout`."""

    served: Annotated[int, Field(ge=1)]
    rates: Annotated[list[NonNegativeRate], Field(min_length=1)]
    ranks: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
    seed: Annotated[int, Field(ge=0)] = 0


class _WorkloadFile(_SpecModel):
    """Top level of a workload YAML file: explicit adapters or a reference layout, not both."""

    adapters: tuple[AdapterSpec, ...] | None = None
    layout: _LayoutSection | None = None
    lengths: LengthSpec = LengthSpec()

    @model_validator(mode="after")
    def _exactly_one_form(self) -> _WorkloadFile:
        if (self.adapters is None) == (self.layout is None):
            raise ValueError(
                "expected exactly one of 'adapters' (a list of {id, rank, rate_req_s}) or "
                "'layout' (a mapping {served, rates, ranks, seed})"
            )
        return self


def load_workload_yaml(path: str | Path) -> WorkloadSpec:
    """Read a workload file: an `adapters:` list or a `layout:` mapping, plus optional `lengths:`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: workload file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the workload file ({err})") from None

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: {_describe_yaml_error(err)}") from None

    if document is None:
        raise InputError(f"{path}: the workload file is empty; expected an 'adapters:' list or a 'layout:' mapping")
    if not isinstance(document, dict):
        raise InputError(
            f"{path}: expected a mapping with 'adapters:' or 'layout:' at the top level, "
            f"got {type(document).__name__}"
        )

    try:
        parsed = _WorkloadFile.model_validate(document)
    except ValidationError as err:
        raise InputError(describe_validation_error(str(path), err, _WorkloadFile)) from None

    # Imported here: the lengths module builds on this one.
    from loratwin.workload.lengths import check_length_spec

    try:
        # Means that no log-normal can reach are a mistake in this file: report it now, not at sampling.
        check_length_spec(parsed.lengths)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None

    if parsed.layout is not None:
        layout = parsed.layout
        return reference_layout(layout.served, layout.rates, layout.ranks, layout.seed, parsed.lengths)
    try:
        return WorkloadSpec.model_validate({"adapters": parsed.adapters, "lengths": parsed.lengths})
    except ValidationError as err:
        raise InputError(describe_validation_error(str(path), err, WorkloadSpec)) from None


def _describe_yaml_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    if mark is None:
        return f"invalid YAML: {problem}"
    # yaml marks are 0-based; editors count from 1.
    return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"


def describe_validation_error(
    source: str, err: ValidationError, model: type[BaseModel] | None = None
) -> str:
    """One readable line per problem: `source: field.path[3].name: what was expected, got X`."""
    lines = []
    for problem in err.errors(include_url=False):
        location = _format_location(problem["loc"])
        message = _describe_problem(problem, model)
        lines.append(f"{source}: {location}: {message}" if location else f"{source}: {message}")
    return "\n".join(lines)


def _format_location(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
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
    current: Any = model
    for part in location:
        current = _unwrap_model(current)
        if current is None:
            return []
        if isinstance(part, int):
            continue  # already unwrapped to the item type of the list/tuple
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
    current = _unwrap_model(current)
    return list(current.model_fields) if current is not None else []


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation such as `X`, `X | None`, `tuple[X, ...]` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _unwrap_model(argument)
        if found is not None:
            return found
    return None

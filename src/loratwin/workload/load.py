"""Read a workload YAML file: explicit adapters or a layout, plus request lengths and arrivals.

Apart from spec.py so that the file check can use the lengths module, which builds on spec.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from loratwin import budget
from loratwin.errors import InputError
from loratwin.textfile import read_user_text
from loratwin.workload.lengths import check_length_spec
from loratwin.workload.spec import (
    RATE_WORDS,
    AdapterSpec,
    ArrivalSpec,
    NonNegativeRate,
    PoissonArrival,
    Rate,
    RequestLengths,
    ShareGPTLengths,
    WorkloadSpec,
    _SpecModel,
    describe_validation_error,
    reference_layout,
    zipf_layout,
)
from loratwin.yamlfile import describe_yaml_error

__all__ = ["load_workload_yaml"]


class _LayoutSection(_SpecModel):
    """The reference `layout:` form of a workload file, expanded through `reference_layout`."""

    served: Annotated[int, Field(ge=1)]
    rates: Annotated[list[Rate], Field(min_length=1)]
    ranks: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
    seed: Annotated[int, Field(ge=0)] = 0
    kind: Literal["reference"] = "reference"


class _ZipfLayoutSection(_SpecModel):
    """The `layout: {kind: zipf, ...}` form, expanded through `zipf_layout`."""

    kind: Literal["zipf"]
    served: Annotated[int, Field(ge=1)]
    total_rate_req_s: Rate
    exponent: NonNegativeRate = 1.0
    ranks: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
    seed: Annotated[int, Field(ge=0)] = 0


def _layout_kind(value: Any) -> Any:
    # The reference form predates `kind`, so a layout without one is a reference layout.
    if isinstance(value, dict):
        return value.get("kind", "reference")
    return getattr(value, "kind", None)


_Layout = Annotated[
    Annotated[_LayoutSection, Tag("reference")] | Annotated[_ZipfLayoutSection, Tag("zipf")],
    Discriminator(_layout_kind),
]


class _WorkloadFile(_SpecModel):
    """Top level of a workload YAML file: explicit adapters or a layout, not both."""

    adapters: tuple[AdapterSpec, ...] | None = None
    layout: _Layout | None = None
    lengths: RequestLengths = ShareGPTLengths()
    arrival: ArrivalSpec = PoissonArrival()

    @model_validator(mode="after")
    def _exactly_one_form(self) -> _WorkloadFile:
        if (self.adapters is None) == (self.layout is None):
            raise ValueError(
                "expected exactly one of 'adapters' (a list of {id, rank, rate_req_s, arrival}) or "
                "'layout' (a mapping {served, rates, ranks, seed} or "
                "{kind: zipf, served, total_rate_req_s, exponent, ranks, seed})"
            )
        return self


def _check_adapters_list(adapters: Any) -> None:
    """Price an `adapters:` list for the memory limit before its adapters are built (a layout is
    priced by the layout functions)."""
    if not isinstance(adapters, list):
        return
    rates = (a.get("rate_req_s") for a in adapters if isinstance(a, dict))
    total = math.fsum(r for r in rates if isinstance(r, (int, float)) and math.isfinite(r) and r > 0)
    budget.require(budget.adapters_estimate(len(adapters), total))


def _check_rates_given(path: Path, text: str, adapters: Any) -> None:
    """Every adapter of an `adapters:` list states its rate: a forgotten `rate_req_s` would otherwise
    serve the adapter at 0 req/s without a word."""
    if not isinstance(adapters, list):
        return
    for position, adapter in enumerate(adapters):
        if isinstance(adapter, dict) and "rate_req_s" not in adapter:
            line = _adapter_line(text, position)
            where = f"{path} line {line}" if line is not None else str(path)
            name = f" (id {adapter['id']!r})" if "id" in adapter else ""
            raise InputError(f"{where}: adapters[{position}]{name}: rate_req_s is required ({RATE_WORDS})")


def _adapter_line(text: str, position: int) -> int | None:
    """The line (from 1) where item `position` of the top-level `adapters:` list starts."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if key.value == "adapters" and isinstance(value, yaml.SequenceNode) and position < len(value.value):
            return value.value[position].start_mark.line + 1
    return None


def load_workload_yaml(path: str | Path) -> WorkloadSpec:
    """Read a workload file: an `adapters:` list or a `layout:` mapping, plus optional `lengths:` and
    `arrival:` (the process of every adapter without its own `arrival:`)."""
    path = Path(path)
    if path.is_file():
        budget.require(budget.yaml_estimate(path.stat().st_size, path))
    text = read_user_text(path, "a workload YAML file (adapters: or layout:)", encoding="utf-8")

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: {describe_yaml_error(err)}") from None

    if document is None:
        raise InputError(f"{path}: the workload file is empty; expected an 'adapters:' list or a 'layout:' mapping")
    if not isinstance(document, dict):
        raise InputError(
            f"{path}: expected a mapping with 'adapters:' or 'layout:' at the top level, "
            f"got {type(document).__name__}"
        )

    placement = isinstance(document.get("gpus"), list) and not isinstance(document.get("adapters"), list)
    if placement and "layout" not in document:  # what place --out writes: its adapters: is a count
        raise InputError(f"{path}: a placement (gpus:, as place --out writes), not a workload; expected an "
                         "'adapters:' list or a 'layout:' mapping")
    _check_adapters_list(document.get("adapters"))
    try:
        parsed = _WorkloadFile.model_validate(document)
    except ValidationError as err:
        raise InputError(describe_validation_error(str(path), err, _WorkloadFile)) from None
    _check_rates_given(path, text, document.get("adapters"))

    try:
        # Means that no log-normal can reach are a mistake in this file: report it now, not at sampling.
        check_length_spec(parsed.lengths)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None

    layout = parsed.layout
    if isinstance(layout, _ZipfLayoutSection):
        return zipf_layout(
            layout.served, layout.total_rate_req_s, layout.exponent, layout.ranks, layout.seed,
            parsed.lengths, parsed.arrival,
        )
    if isinstance(layout, _LayoutSection):
        return reference_layout(
            layout.served, layout.rates, layout.ranks, layout.seed, parsed.lengths, parsed.arrival
        )
    try:
        return WorkloadSpec.model_validate(
            {"adapters": parsed.adapters, "lengths": parsed.lengths, "arrival": parsed.arrival}
        )
    except ValidationError as err:
        raise InputError(describe_validation_error(str(path), err, WorkloadSpec)) from None

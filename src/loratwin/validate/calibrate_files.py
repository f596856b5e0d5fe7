"""Reading calibration CSVs: rows with their line numbers, numbers checked by the profile's own
field types, each refusal naming the file, line and column."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import Field, TypeAdapter, ValidationError

from loratwin.errors import InputError
from loratwin.profiles.model import TermMs
from loratwin.textfile import read_user_text

# A measured mean ITL is a positive time below the longest term a profile holds.
PositiveMs = Annotated[TermMs, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]

Row = tuple[int, dict[str, str]]  # (line number, row)


def rows_of(path: Path, columns: Sequence[str], model: str | None = None) -> list[Row]:
    """The rows of a calibration CSV with their line numbers; refuses missing columns and, with
    `model`, a file without rows of that model."""
    text = read_user_text(path, f"a calibration file ({path.name}, CSV with a header row)")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    try:
        header = reader.fieldnames or []
        if not header:
            raise InputError(f"{path}: the file is empty (expected a header row with {', '.join(columns)} and "
                             "measurements)")
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             f"(expected the columns {', '.join(columns)})")
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise InputError(f"{path} line {reader.line_num}: unreadable CSV ({err})") from None
    if model is not None:
        rows = [(line, r) for line, r in rows if r.get("model") == model]
        if not rows:
            raise InputError(f"{path}: no rows for model {model!r}")
    elif not rows:
        raise InputError(f"{path}: no rows (expected a header and at least one measurement)")
    return rows


def number(row: Row, name: str, path: Path, kind: Any = float) -> Any:
    """Column `name` of a row, as a number of the type `kind` (a pydantic type that carries the
    field's rule in the profile model), refused with the file, line and column otherwise."""
    line, values = row
    text = values.get(name)
    where = f"{path} line {line}: {name}"
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # TypeError: a short row leaves the column None
        raise InputError(f"{where}: expected a number, got {'nothing' if text is None else repr(text)}") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: must be a finite number, got {text!r}")
    if _is_int(kind):
        if value != int(value):
            raise InputError(f"{where}: must be a whole number, got {text!r}")
        value = int(value)
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as err:
        said = message(err)
        raise InputError(f"{where}: {said}" + ("" if ", got " in said else f", got {text!r}")) from None


def _is_int(kind: Any) -> bool:
    return kind is int or (get_origin(kind) is Annotated and get_args(kind)[0] is int)


def message(err: ValidationError) -> str:
    msg = err.errors()[0]["msg"]
    return msg.removeprefix("Value error, ")

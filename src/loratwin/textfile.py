"""Reading text files given by users: every way a path can fail to be the text file expected (missing,
a folder, unreadable, binary) becomes one InputError that names the path and what was expected."""

from __future__ import annotations

from pathlib import Path

from loratwin.errors import InputError


def read_user_text(path: str | Path, what: str, *, encoding: str = "utf-8-sig") -> str:
    """The text of `path`, described to the user as `what` (e.g. "a runs file (runs.csv)").

    utf-8-sig by default: spreadsheet exports often start with a byte-order mark, which is not data."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected {what}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; expected {what}") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror or err}); expected {what}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not a text file (byte {err.start} is not {err.encoding.upper()}); expected {what}"
        ) from None
    if "\x00" in text:
        # valid UTF-8 can still be binary; no text format loratwin reads holds a NUL byte
        raise InputError(f"{path}: not a text file (it holds NUL bytes); expected {what}")
    return text

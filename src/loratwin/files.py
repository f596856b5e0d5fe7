"""Writing results so that a reader never sees half of one, and the rule every output place follows.

* `atomic_write(path, write)`: one file, written to a temporary file beside it, synced, then renamed
  over it (atomic on POSIX), with the directory synced too.
* `written_whole(folder, own)`: a results folder, written into a temporary folder beside it that takes
  its place at the end. A failure or an interrupt leaves the folder as it was. An existing folder is
  replaced only when everything in it matches `own` (the names that writer writes: a previous result of
  the same kind); a folder holding anything else is the user's, and is refused.
* `check_outputs(*outputs)`: the rule for output places, checked before any work starts, so that a
  mistake costs no time and leaves nothing behind: the parent folder exists (it is not created), a file
  is not an existing folder and a folder not an existing file, the place is writable, a folder written
  whole holds nothing but a previous result of its kind, a store written in place is new, empty or one
  to resume (it holds its marker file), and no two outputs (nor an output and an input) are the same
  place. Each mistake is an InputError naming the flag and the path.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loratwin.errors import InputError, OutputError

FOREIGN_SHOWN = 3


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes the content to a temporary path; it then replaces `path` whole. A
    failure or an interrupt leaves `path` as it was and no temporary file behind."""
    tmp = _sibling(path, "tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


@contextmanager
def written_whole(path: str | Path, own: Sequence[str], carry: Sequence[str] = ()) -> Iterator[Path]:
    """Yields a new, empty temporary folder beside `path`; when the block ends without an error, the
    folder takes `path`'s place whole (a previous result there, everything in it matching the glob
    patterns `own`, is replaced). On an error or an interrupt nothing changes at `path`. `carry`:
    names of entries of the existing folder that the new one keeps (moved across just before the
    swap, and back if it fails; e.g. the sweep store `train --profile` keeps beside its models)."""
    path = Path(path)
    if path.is_symlink():  # write where the link points; the link stays
        path = Path(os.path.realpath(path))
    tmp = _sibling(path, "tmp")
    try:
        try:
            tmp.mkdir()
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the results folder ({_reason(exc)})") from None
        try:
            yield tmp
        except OSError as exc:  # a write into the folder failed (a full disk, ...): name the folder, not the temporary
            if exc.filename is not None and not _inside(exc.filename, tmp):
                raise  # something else, e.g. an input that could not be read
            raise OutputError(f"{path}: cannot write the results folder ({_reason(exc)}); nothing was written") from None
        _sync_tree(tmp)
        carried = [name for name in carry if (path / name).exists() and not (tmp / name).exists()]
        for name in carried:
            os.rename(path / name, tmp / name)
        try:
            _swap_in(tmp, path, own)
        except BaseException:
            for name in carried:  # the swap left `path` as it was: give its entries back
                if (tmp / name).exists():
                    os.rename(tmp / name, path / name)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def foreign_entries(folder: Path, own: Sequence[str]) -> list[str]:
    """Names in `folder` that match none of the glob patterns `own`, sorted."""
    return sorted(e.name for e in folder.iterdir() if not any(fnmatch.fnmatchcase(e.name, p) for p in own))


@dataclass(frozen=True)
class Output:
    """An output place a command was given: `label` names it in messages (a flag, e.g. "--out").
    `folder`: a folder of results (else a file). `own`: for a folder written whole, the glob patterns
    of what its writer puts in it; None for a folder written into in place (a resumable store).
    `resumes`: for a store, the names that mark one (any of them): an existing folder that holds
    none of them must be empty, or it is the user's."""

    label: str
    path: Path | None
    folder: bool = False
    own: Sequence[str] | None = ()
    resumes: Sequence[str] = ()

    @property
    def shown(self) -> str:
        return f"{self.label} {self.path}"


def check_outputs(*outputs: Output, inputs: Iterable[Path | None] = ()) -> None:
    """The rule for output places (module docstring), before any work: an InputError naming the flag
    and the place for the first one that breaks it. Outputs whose path is None were not given."""
    given = [o for o in outputs if o.path is not None]
    sources = [Path(p) for p in inputs if p is not None]
    for source in sources:  # before the folder's contents are judged: an input there is the cause, not the user's files
        for output in given:
            if output.folder and output.own is not None and _holds(output.path, source):
                what = "is" if _same(output.path, source) else f"holds {source},"
                raise InputError(f"{output.shown}: {what} an input of this command; write the result elsewhere")
    for i, a in enumerate(given):
        for b in given[i + 1:]:
            _check_apart(a, b)
    stores = {Path(o.path).resolve() for o in given if o.folder and o.own is None}  # made before what goes in them
    for output in given:
        if Path(output.path).resolve().parent in stores:
            _check_kind(output)
        else:
            _check_one(output)
    for source in sources:
        for output in given:
            if not output.folder and _same(output.path, source):
                raise InputError(f"{output.shown}: is an input of this command; write the result elsewhere")


def _check_one(output: Output) -> None:
    path, shown = Path(output.path), output.shown
    if path.name in ("", ".", ".."):
        raise InputError(f"{shown}: name a {'folder' if output.folder else 'file'} to write, not {str(path)!r}")
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{shown}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"{shown}: {parent} is not a folder")
    _check_kind(output)
    _probe_writable(parent, shown)
    if output.folder and path.is_dir():  # written into, or replaced by a folder that keeps its permissions
        _probe_writable(path, shown)


def _check_kind(output: Output) -> None:
    """A file is not an existing folder, a folder not an existing file nor one holding the user's files."""
    path, shown = Path(output.path), output.shown
    if output.folder:
        if path.exists() and not path.is_dir():
            raise InputError(f"{shown}: is a file; expected a folder")
        if path.is_dir() and output.own is not None:
            foreign = foreign_entries(path, output.own)
            if foreign:
                raise InputError(f"{shown}: the folder holds {_listed(foreign)}, which loratwin did not write there; "
                                 "give a new or empty folder")
        if path.is_dir() and output.own is None and output.resumes and not any((path / m).exists() for m in output.resumes):
            held = sorted(e.name for e in path.iterdir())
            if held:
                raise InputError(f"{shown}: the folder holds {_listed(held)} and is not a store to resume (it has none "
                                 f"of {', '.join(output.resumes)}); give a new or empty folder")
    elif path.is_dir():
        raise InputError(f"{shown}: is a folder; expected a file name")


def _check_apart(a: Output, b: Output) -> None:
    pa_, pb = Path(a.path).resolve(), Path(b.path).resolve()
    if pa_ == pb:
        raise InputError(f"{b.shown}: the same place as {a.label}; give each output its own place")
    for outer, inner in ((a, b), (b, a)):
        if outer.folder and outer.own is not None and Path(outer.path).resolve() in Path(inner.path).resolve().parents:
            raise InputError(f"{inner.shown}: inside the folder of {outer.label}, which is written whole; "
                             "give it a place outside")


def _inside(filename: str | bytes | os.PathLike, folder: Path) -> bool:
    name = Path(os.fsdecode(filename))
    return name == folder or folder in name.parents or folder.name in name.parts


def _holds(folder: Path, path: Path) -> bool:
    """`path` is `folder` or inside it (a folder written whole would replace it)."""
    try:
        folder, path = Path(folder).resolve(), Path(path).resolve()
    except OSError:
        return False
    return folder == path or folder in path.parents


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _probe_writable(folder: Path, shown: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".loratwin-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{shown}: cannot write in {folder} ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(name)


def _swap_in(tmp: Path, path: Path, own: Sequence[str]) -> None:
    """`tmp` takes `path`'s place; a previous result there is removed once the new one stands."""
    try:
        if not (path.exists() or path.is_symlink()):
            os.rename(tmp, path)
        else:
            if not path.is_dir():
                raise OutputError(f"{path}: is a file; expected a folder")
            foreign = foreign_entries(path, own)
            if foreign:
                raise OutputError(f"{path}: the folder holds {_listed(foreign)}, which loratwin did not write there; "
                                  "the result was not written")
            old = _sibling(path, "old")
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the results folder ({_reason(exc)})") from None


def _sibling(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.{what}")


def _sync_tree(folder: Path) -> None:
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:FOREIGN_SHOWN])
    return shown + (f" and {len(names) - FOREIGN_SHOWN} more" if len(names) > FOREIGN_SHOWN else "")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)

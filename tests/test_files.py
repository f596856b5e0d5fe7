"""loratwin.files: result folders written whole or not at all, and the rule every output place follows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loratwin.errors import InputError, OutputError
from loratwin.files import Output, atomic_write, check_outputs, foreign_entries, written_whole

OWN = ("summary.json", "*.parquet")


def listing(root: Path) -> dict[str, str | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_text() for p in sorted(root.rglob("*"))}


def test_a_new_folder_appears_whole(tmp_path):
    with written_whole(tmp_path / "run", OWN) as tmp:
        assert not (tmp_path / "run").exists()
        (tmp / "summary.json").write_text("{}")
        (tmp / "a.parquet").write_text("a")
    assert listing(tmp_path) == {"run": None, "run/a.parquet": "a", "run/summary.json": "{}"}


def test_a_failure_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError), written_whole(tmp_path / "run", OWN) as tmp:
        (tmp / "summary.json").write_text("{}")
        raise RuntimeError("the work failed")
    assert listing(tmp_path) == {}


def test_a_failed_write_names_the_folder_not_the_temporary(tmp_path):
    with pytest.raises(OutputError, match=r"run: cannot write the results folder \(No space left on device\)"), \
            written_whole(tmp_path / "run", OWN) as tmp:
        raise OSError(28, "No space left on device", str(tmp / "steps.parquet"))
    assert listing(tmp_path) == {}


def test_a_previous_result_is_replaced_and_kept_when_the_new_one_fails(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("old")
    (run / "old.parquet").write_text("old")
    with pytest.raises(RuntimeError), written_whole(run, OWN) as tmp:
        (tmp / "summary.json").write_text("new")
        raise RuntimeError
    assert listing(tmp_path) == {"run": None, "run/old.parquet": "old", "run/summary.json": "old"}
    with written_whole(run, OWN) as tmp:
        (tmp / "summary.json").write_text("new")
    assert listing(tmp_path) == {"run": None, "run/summary.json": "new"}


def test_a_folder_with_the_users_files_is_refused_and_left_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds notes.txt"), written_whole(run, OWN) as tmp:
        (tmp / "summary.json").write_text("new")
    assert listing(tmp_path) == {"run": None, "run/notes.txt": "mine"}


def test_carried_entries_stay_through_a_swap_and_a_failed_one(tmp_path, monkeypatch):
    import loratwin.files as files

    run = tmp_path / "run"
    (run / "store").mkdir(parents=True)
    (run / "store" / "part.parquet").write_text("kept")
    (run / "summary.json").write_text("old")
    with written_whole(run, (*OWN, "store"), carry=("store",)) as tmp:
        (tmp / "summary.json").write_text("new")
    assert listing(tmp_path) == {"run": None, "run/store": None, "run/store/part.parquet": "kept",
                                 "run/summary.json": "new"}

    def failing_swap(tmp, path, own):
        raise OutputError("the swap failed")

    monkeypatch.setattr(files, "_swap_in", failing_swap)
    with pytest.raises(OutputError), written_whole(run, (*OWN, "store"), carry=("store",)) as tmp:
        (tmp / "summary.json").write_text("newer")
    assert listing(tmp_path) == {"run": None, "run/store": None, "run/store/part.parquet": "kept",
                                 "run/summary.json": "new"}


def test_a_link_to_a_folder_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with written_whole(tmp_path / "link", OWN) as tmp:
        (tmp / "summary.json").write_text("{}")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "summary.json").read_text() == "{}"


def test_foreign_entries():
    assert foreign_entries(Path(__file__).parent / "cli", ("*.py",)) == []
    assert "test_startup.py" in foreign_entries(Path(__file__).parent / "cli", ("__init__.py",))


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "p.yaml"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert listing(tmp_path) == {"p.yaml": "old"}


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("mine")
    Path("full").mkdir()
    Path("full/notes.txt").write_text("mine")
    Path("empty").mkdir()
    Path("prev").mkdir()
    Path("prev/summary.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize(("outputs", "message"), [
    ([Output("--out", Path("missing/x"), folder=True)], "--out missing/x: the folder missing does not exist"),
    ([Output("--out", Path("afile/x"))], "--out afile/x: afile is not a folder"),
    ([Output("--out", Path("afile"), folder=True)], "--out afile: is a file; expected a folder"),
    ([Output("--out", Path("empty"))], "--out empty: is a folder; expected a file name"),
    ([Output("--out", Path("full"), folder=True, own=OWN)], "--out full: the folder holds notes.txt"),
    ([Output("--out", Path("."), folder=True)], "--out .: name a folder to write, not '.'"),
    ([Output("--out", Path(".."), folder=True)], "--out ..: name a folder to write"),
    ([Output("--out", Path("new"), folder=True, own=OWN), Output("--report", Path("new"), folder=True)],
     "--report new: the same place as --out"),
    ([Output("--out", Path("new"), folder=True, own=OWN), Output("--report", Path("new/r"), folder=True)],
     "--report new/r: inside the folder of --out"),
])
def test_output_places_that_are_refused(places, outputs, message):
    with pytest.raises(InputError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        check_outputs(*outputs)


def test_output_places_that_are_accepted(places):
    check_outputs(Output("--out", Path("new"), folder=True, own=OWN), Output("--a", Path("empty"), folder=True, own=OWN),
                  Output("--b", Path("prev"), folder=True, own=OWN), Output("--c", Path("afile")),
                  Output("--d", Path("full"), folder=True, own=None), Output("--e", None),
                  Output("--f", Path("full/labels"), folder=True, own=OWN))
    # a store written in place may hold a report
    check_outputs(Output("--out", Path("s"), folder=True, own=None), Output("--report", Path("s/r"), folder=True))
    assert listing(places) == {"afile": "mine", "empty": None, "full": None, "full/notes.txt": "mine", "prev": None,
                               "prev/summary.json": "{}"}


def test_an_output_may_not_be_an_input(places):
    with pytest.raises(InputError, match="--command-out afile: is an input of this command"):
        check_outputs(Output("--command-out", Path("afile")), inputs=[None, Path("./afile")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere permissions allow")
def test_an_unwritable_folder_is_refused(places):
    os.chmod("empty", 0o500)
    try:
        with pytest.raises(InputError, match="--out empty/x: cannot write in empty"):
            check_outputs(Output("--out", Path("empty/x")))
    finally:
        os.chmod("empty", 0o700)

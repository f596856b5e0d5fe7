"""The runs file reader: every malformed file is one InputError naming the file, line and column."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loratwin.errors import InputError
from loratwin.validate import load_runs
from loratwin.validate.replay import replay_runs

HEADER = (
    "run_id,source_set,model,max_loras,served_adapters,max_lora_rank,adapter_rank_cycle,rate_values,"
    "rate_counts,status,total_tok_s,starved_approx"
)
ROW = "r1,dt_modelling,llama-3.1-8b-instruct,8,8,16,8 16,0.1 0.2,4 4,ok,123.5,0"


def write(tmp_path, *lines: str, name: str = "runs.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_good_file_loads(tmp_path):
    (run,) = load_runs(write(tmp_path, HEADER, ROW, ""))
    assert (run.max_loras, run.rank_cycle, run.rate_counts, run.measured["total_tok_s"]) == (8, (8, 16), (4, 4), 123.5)
    assert run.starved is False


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # a truncated row is an error naming the columns it lacks, not a run without measurements
        (",".join(ROW.split(",")[:10]), r"line 3: missing columns total_tok_s, starved_approx \(the row has 10"),
        (ROW + ",extra", r"line 3: 13 fields, more than the header's 12"),
        (ROW.replace(",123.5,0", ",123.5,maybe"), r"line 3: starved_approx must be 0, 1"),
        (ROW.replace("123.5", "nan"), r"line 3: total_tok_s must be a finite number"),
        (ROW.replace("123.5", "inf"), r"line 3: total_tok_s must be a finite number"),
        (ROW.replace(",8,8,16,", ",0,8,16,"), r"line 3: max_loras must be an integer >= 1"),
        (ROW.replace(",8 16,", ",8 -16,"), r"line 3: adapter_rank_cycle must be space-separated integers >= 1"),
        (ROW.replace("0.1 0.2", "0.1 nan"), r"line 3: rate_values must be space-separated numbers >= 0"),
        (ROW.replace("4 4", "4 5"), r"line 3: rate_counts add up to 9, not served_adapters 8"),
        (ROW.replace(",8,8,16,", ",16,8,16,"), r"line 3: max_loras 16 is above served_adapters 8"),
        (ROW.replace(",8,8,16,", ",8,8,8,"), r"line 3: adapter_rank_cycle holds rank 16, above max_lora_rank 8"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, row, expected):
    with pytest.raises(InputError, match=expected):
        load_runs(write(tmp_path, HEADER, ROW, row))


def test_rows_that_are_not_replayed_need_not_be_consistent(tmp_path):
    # a port clash says nothing about the server: such rows are read but never replayed
    row = ROW.replace("4 4", "4 5").replace(",ok,", ",port_bind_error,")
    (run,) = load_runs(write(tmp_path, HEADER, row))
    assert not run.start_known


def test_blank_lines_are_skipped_and_line_numbers_count_them(tmp_path):
    path = write(tmp_path, HEADER, "", ROW, " , ,", ROW.replace("8,8,16", "x,8,16"))
    with pytest.raises(InputError, match=r"line 5: max_loras must be an integer"):
        load_runs(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x7fELF\x02\x01\x01\x00\xff\xfe binary", r"not a text file \(byte \d+ is not UTF-8"),
        (b"run_id\x00,source_set\n", r"not a text file \(it holds NUL bytes\)"),
        (b"", r"the file is empty"),
        (b"a,b,c\n1,2,3\n", r"missing columns run_id, source_set"),
        (HEADER.replace("total_tok_s", "status").encode() + b"\n", r"line 1: columns named twice: status"),
        (b'run_id,"unterminated\n', r"missing columns|unreadable CSV"),
    ],
)
def test_bad_files(tmp_path, content, expected):
    path = tmp_path / "runs.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        load_runs(path)


def test_a_byte_order_mark_is_not_data(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_bytes(("\ufeff" + HEADER + "\n" + ROW + "\n").encode())
    assert len(load_runs(path)) == 1


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(InputError, match=r"is a folder; expected a runs file"):
        load_runs(tmp_path)
    with pytest.raises(InputError, match=r"does not exist; expected a runs file"):
        load_runs(tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"seeds": ()}, "--seeds: at least one seed"), ({"workers": -1}, "--workers: must be >= 1"),
     ({"client_max_waiting": 0}, "--client-max-waiting: must be >= 1")],
)
def test_replay_options_are_checked_before_any_work(tmp_path, options, expected):
    runs = load_runs(write(tmp_path, HEADER, ROW))
    with pytest.raises(InputError, match=expected):
        replay_runs(runs, lambda name: pytest.fail("no profile may be loaded"), **options)


def test_validate_command_refuses_bad_files_in_one_line(tmp_path):
    short = write(tmp_path, HEADER, ",".join(ROW.split(",")[:10]), name="short.csv")
    empty = write(tmp_path, HEADER, name="empty.csv")
    unknown = write(tmp_path, HEADER, ROW.replace("llama-3.1-8b-instruct", "mystery"), name="unknown.csv")
    for target, expected in (
        (short, "missing columns total_tok_s, starved_approx"),
        (tmp_path, "is a folder"),
        (empty, "no runs to replay: none ran or failed to start"),
        (unknown, "runs of model 'mystery': unknown profile 'mystery'"),
    ):
        proc = subprocess.run([sys.executable, "-m", "loratwin.cli", "validate", str(target)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert expected in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1

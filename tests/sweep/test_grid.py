"""Grid files: parsing, errors that name the file and field, the built-in paper grid, stable keys."""

from __future__ import annotations

import pytest
import yaml

from loratwin.errors import InfeasibleConfigError, InputError
from loratwin.profiles import load_profile
from loratwin.sweep.grid import (
    PAPER_COUNTS,
    PAPER_RANK_MIXES,
    expand,
    grid_from_yaml,
    load_grid,
    paper_grid,
    parse_slice,
)

from .conftest import SEARCH_GRID, SMALL_GRID

BASE = "served: [8, 16]\nmax_loras: [8]\nranks: [[8, 16]]\nrates: [[1.0]]\n"


def test_small_grid_expands_in_grid_order():
    grid = grid_from_yaml(SMALL_GRID, "small.yaml")
    expansion = expand(grid, "small.yaml")
    assert len(expansion.workloads) == 2
    # max_loras <= served: 4 runs at max_loras 8, 3 at 16, per workload
    assert len(expansion.runs) == 14
    assert expansion.skipped_infeasible == 0
    first = [(r.workload.index, r.max_loras, r.served) for r in expansion.runs[:7]]
    assert first == [(0, 8, 8), (0, 8, 16), (0, 8, 24), (0, 8, 32), (0, 16, 16), (0, 16, 24), (0, 16, 32)]
    run = expansion.runs[0]
    assert run.max_lora_rank == 16 and run.client_max_waiting == 25500 and run.duration_s == 300
    assert run.server_config().max_cpu_loras == run.served


def test_ranges_and_combinations_expand():
    grid = grid_from_yaml(
        "served: {start: 8, stop: 32, step: 8}\nmax_loras: 8\nranks: [[8]]\n"
        "rates: {levels: [0.4, 0.2, 0.1, 0.05], choose: 3}\n"
        "popularity: [{total_rate_req_s: 20, exponent: 1.2}]\n"
        "arrival: [poisson, {kind: gamma, cv: 2}]\nseeds: [0, 1]\n",
        "g.yaml",
    )
    assert grid.served == [8, 16, 24, 32] and grid.max_loras == [8]
    assert grid.rates == [[0.4, 0.2, 0.1], [0.4, 0.2, 0.05], [0.4, 0.1, 0.05], [0.2, 0.1, 0.05]]
    workloads = expand(grid).workloads
    # (4 rate triples + 1 Zipf law) x 1 rank mix x 2 arrivals x 2 seeds
    assert len(workloads) == 20
    zipf = [w for w in workloads if w.layout == "zipf"]
    assert len(zipf) == 4 and zipf[0].zipf_exponent == 1.2
    spec = zipf[0].build(16)
    assert len(spec.adapters) == 16 and spec.aggregate_rate_req_s == pytest.approx(20)
    gamma = [w for w in workloads if '"gamma"' in w.arrival]
    assert gamma and gamma[0].build(8).arrival.kind == "gamma"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "servd: [8]\n", "g.yaml: servd: unknown field; expected one of: name, profile"),
        (BASE.replace("[[8, 16]]", "[[8, 0]]"), "g.yaml: ranks[0][1]: must be > 0, got 0"),
        (BASE.replace("[8, 16]\nmax", "[8, -1]\nmax"), "g.yaml: served[1]: must be >= 1, got -1"),
        (BASE.replace("served: [8, 16]", "served: {start: 16, stop: 8}"), "g.yaml: served: expected a range {start, stop, step}: stop (8) must be >= start (16)"),
        (BASE.replace("rates: [[1.0]]", "rates: {levels: [1, 2], choose: 3}"), "g.yaml: rates: expected rate combinations {levels, choose}: choose (3) must be <= the number of levels (2)"),
        (BASE.replace("rates: [[1.0]]", "rates: [[-1]]"), "g.yaml: rates[0][0]: must be >= 0, got -1"),
        (BASE.replace("rates: [[1.0]]\n", ""), "g.yaml: expected 'rates'"),
        (BASE + "arrival: [{kind: gamma}]\n", "g.yaml: arrival[0].cv: is required"),
        (BASE + "server: {max_lora_rank: 8}\n", "g.yaml: ranks: rank 16 is above server.max_lora_rank (8)"),
        (BASE + "server: {max_lora_rank: 12}\n",
         "g.yaml: server.max_lora_rank: max_lora_rank 12: vLLM accepts only 8, 16, 32, 64, 128, 256, 320, 512"),
        (BASE.replace("[[8, 16]]", "[[8, 600]]"), "g.yaml: ranks: adapter rank 600 is above 512"),
        (BASE + "seeds: [1, 1]\n", "g.yaml: seeds: must be distinct"),
        (BASE + "duration_s: 0\n", "g.yaml: duration_s: must be > 0"),
        ("served: [8\n", "g.yaml: line 2, column 1: invalid YAML"),
        ("- 1\n", "g.yaml: expected a mapping of grid fields"),
    ],
)
def test_grid_errors_name_file_and_field(text, expected):
    with pytest.raises(InputError) as err:
        grid_from_yaml(text, "g.yaml")
    assert expected in str(err.value)


def test_errors_found_while_expanding_name_the_file(tmp_path):
    # a profile with measured KV sizes only (no memory model) prices no other max_lora_rank
    table_only = load_profile("llama-3.1-8b-instruct")
    table_only = table_only.model_copy(update={"kv": table_only.kv.model_copy(update={"memory": None})})
    path = tmp_path / "table-only.yaml"
    path.write_text(yaml.safe_dump(table_only.model_dump(mode="json")))
    with pytest.raises(InputError, match=r"g.yaml: max_loras 8 with max_lora_rank 64: .*max_lora_rank \[8, 16, 32\]"):
        expand(grid_from_yaml(BASE.replace("[[8, 16]]", "[[64]]") + f"profile: {path}\n", "g.yaml"), "g.yaml")
    with pytest.raises(InputError, match=r"g.yaml: profile: unknown profile 'nope'"):
        expand(grid_from_yaml(BASE + "profile: nope\n", "g.yaml"), "g.yaml")


def test_load_grid_by_name_or_file(write_grid):
    grid, source = load_grid("paper")
    assert grid.name == "paper" and source == "paper"
    path = write_grid(SMALL_GRID)
    assert load_grid(path)[0].name == "small"
    with pytest.raises(InputError, match="no such grid file, and not a built-in grid"):
        load_grid(path.parent / "missing.yaml")


def test_paper_grid_counts():
    grid = paper_grid()
    assert grid.server.client_max_waiting == 25_500 and grid.duration_s == 3600 and grid.seeds == [0]
    expansion = expand(grid)
    # 120 rate triples (10 choose 3) x 7 rank mixes
    assert len(expansion.workloads) == 840
    pairs = [(s, m) for s in PAPER_COUNTS for m in PAPER_COUNTS if m <= s]
    assert len(pairs) == 55
    assert len(expansion.runs) + expansion.skipped_infeasible == 840 * 55
    # cross-check the skipped count against the profile's KV table, which refuses rank 16 from
    # 256 slots and rank 32 from 128
    kv = load_profile("llama-3.1-8b-instruct").kv
    infeasible_pairs = 0
    for mix in PAPER_RANK_MIXES:
        for _served, max_loras in pairs:
            try:
                kv.tokens(max_loras, max(mix))
            except InfeasibleConfigError:
                infeasible_pairs += 1
    assert expansion.skipped_infeasible == 120 * infeasible_pairs == 9720
    assert len(expansion.runs) == 36480
    assert len({r.key for r in expansion.runs}) == len(expansion.runs)


def test_keys_are_stable_and_depend_on_what_changes_results():
    grid = grid_from_yaml(SEARCH_GRID, "s.yaml")
    first, again = expand(grid), expand(grid_from_yaml(SEARCH_GRID, "s.yaml"))
    assert [r.key for r in first.runs] == [r.key for r in again.runs]
    # a slice of workloads keeps the keys of the full grid
    sliced = expand(grid, workload_slice=parse_slice("1:2"))
    assert {r.key for r in sliced.runs} < {r.key for r in first.runs}
    assert {r.workload.index for r in sliced.runs} == {1}
    other_seed = expand(grid.model_copy(update={"seeds": [1]}))
    assert not {r.key for r in other_seed.runs} & {r.key for r in first.runs}
    longer = expand(grid.model_copy(update={"duration_s": 301.0}))
    assert not {r.key for r in longer.runs} & {r.key for r in first.runs}


def test_parse_slice():
    assert parse_slice("5") == slice(None, 5)
    assert parse_slice("::20") == slice(None, None, 20)
    assert parse_slice("3:9:2") == slice(3, 9, 2)
    for bad in ("a", "1:2:3:4", "::0"):
        with pytest.raises(InputError, match="--workloads"):
            parse_slice(bad)


def test_an_empty_workload_slice_names_the_flag():
    grid = grid_from_yaml(SMALL_GRID, "small.yaml")  # 2 workloads
    for part, shown in ((slice(5, 2), "5:2"), (slice(5, None), "5:"), (slice(None, 0), ":0")):
        with pytest.raises(InputError, match=f"--workloads {shown} selects none of the grid's 2 workloads"):
            expand(grid, "small.yaml", workload_slice=part)


def test_skipped_configurations_are_counted_among_those_considered():
    # per workload: max_loras 16 serves 16 and 256 (2 runs), max_loras 256 cannot start at rank 32 (1 skipped)
    grid = grid_from_yaml("served: [16, 256]\nmax_loras: [16, 256]\nranks: [[16, 32]]\nrates: [[0.1], [0.2]]\n",
                          "g.yaml")
    expansion = expand(grid, "g.yaml")
    assert len(expansion.runs) == 4 and expansion.skipped_infeasible == 2
    assert [expansion.skipped_within(n) for n in (None, 1, 2, 3, 4, 100)] == [2, 0, 0, 1, 2, 2]

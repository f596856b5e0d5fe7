"""Hypothesis strategies for fuzzing the readers of user files: raw bytes, raw text, and text built
from the format's own words (its headers, keys and tricky values), so that the fuzzer reaches past
the first check of a reader into its row, field and value checks.

The property every reader must keep: it returns a valid object or raises InputError, never
another exception. Counts stay small (at most a few hundred): the size limits of a workload are
checked elsewhere, and a fuzzer asking for 10^12 adapters would test the machine, not the parser.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

# Values that have broken parsers: signs, exponents, non-finite numbers, blanks, quotes, separators,
# a byte-order mark, non-ASCII, and numbers just past int32 and float ranges.
TRICKY = (
    "", " ", "0", "1", "-1", "8", "16", "2.5", "-0.0", "1e3", "1e309", "-1e309", "nan", "NaN", "inf",
    "-inf", "Infinity", "0x10", "1_000", "2147483648", "9223372036854775808", "1.5e-320", "abc", '"',
    '"a,b"', "a\nb", "\ufeff", "é", "\x00", "\t", "lora-0", "lora-1", "ok", "oom_at_start", "8 16", "0.1 0.2",
    "4 4", "1 1", " 2 ", "true", "null", "~", "[1]", "{a: 1}",
)


def words(vocabulary: Sequence[str]) -> st.SearchStrategy[str]:
    """One field: a word of the format, a tricky value, or any short text."""
    own = [st.sampled_from(tuple(vocabulary))] if vocabulary else []
    return st.one_of(*own, st.sampled_from(TRICKY), st.text(max_size=8))


def csv_text(header: Sequence[str], vocabulary: Sequence[str] = (), max_rows: int = 6) -> st.SearchStrategy[str]:
    """CSV-like text: mostly the right header (sometimes shuffled, cut or wrong), then rows of
    fields of any count, joined with commas and line breaks of any kind."""
    good_header = ",".join(header)
    headers = st.one_of(
        st.just(good_header),
        st.just(good_header),
        st.permutations(list(header)).map(",".join),
        st.lists(words(header), max_size=len(header) + 1).map(",".join),
    )
    row = st.lists(words([*header, *vocabulary]), max_size=len(header) + 2).map(",".join)
    newline = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])
    return st.tuples(headers, st.lists(st.tuples(row, newline), max_size=max_rows)).map(
        lambda parts: parts[0] + "\n" + "".join(r + n for r, n in parts[1])
    )


def any_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))


def small_scalars() -> st.SearchStrategy[object]:
    """YAML scalars a user might write, numbers kept small (see the module note)."""
    return st.one_of(
        st.none(), st.booleans(), st.integers(-5, 300),
        st.floats(-1e4, 1e4), st.sampled_from([float("nan"), float("inf"), float("-inf")]),
        st.text(max_size=6), st.sampled_from(TRICKY),
    )


def yaml_documents(keys: Sequence[str], leaves: st.SearchStrategy[object] | None = None) -> st.SearchStrategy[object]:
    """Nested mappings and lists keyed by the format's own keys, with small scalar leaves."""
    leaf = leaves if leaves is not None else small_scalars()
    key = st.one_of(st.sampled_from(tuple(keys)), st.text(max_size=5))
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(key, children, max_size=5)
        ),
        max_leaves=25,
    )


def mostly(valid: st.SearchStrategy[str], vocabulary: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """A field that is usually valid, sometimes anything."""
    return st.one_of(valid, valid, valid, words(vocabulary))


def table_text(columns: Sequence[tuple[str, st.SearchStrategy[str]]], max_rows: int = 5) -> st.SearchStrategy[str]:
    """CSV text with the right header and rows of plausible fields (see `mostly`), some rows cut
    short, some too long, some blank."""
    header = ",".join(name for name, _ in columns)
    full = st.tuples(*(strategy for _, strategy in columns)).map(list)
    row = st.one_of(
        full, full, full,
        st.tuples(full, st.integers(0, len(columns) - 1)).map(lambda r: r[0][: r[1]]),
        st.tuples(full, st.lists(words(()), min_size=1, max_size=2)).map(lambda r: r[0] + r[1]),
        st.just([]),
    )
    return st.lists(row.map(",".join), max_size=max_rows).map(lambda rows: "\n".join([header, *rows]) + "\n")

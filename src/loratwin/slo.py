"""Latency SLOs as users state them: `--slo KEY:MS`, repeatable, in the style of
`vllm bench serve --goodput`. One place for the keys, their metric and the parsing rule; the
acceptance rule turns each SLO into one more limit, `simulate` reports whether each is met.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loratwin.errors import InputError

# key -> (the run summary's metric in ms, what it is)
SLO_METRICS: dict[str, tuple[str, str]] = {
    # TTFT over every request sent, one never served counted at its wait so far (twin.result
    # ttft_all_sent_ms): over completed requests alone, a GPU that starves its quiet adapters looks fast
    "ttft_mean": ("mean_ttft_all_sent_ms", "mean time to first token"),
    "ttft_p99": ("p99_ttft_all_sent_ms", "p99 time to first token"),
    "itl_p99": ("p99_itl_ms", "p99 inter-token latency"),
    "tpot_p99": ("p99_tpot_ms", "p99 time per output token"),
}
# an SLO beyond a day is no latency target (and keeps the limit finite in every table)
MAX_SLO_MS = 86_400_000.0


@dataclass(frozen=True)
class Slo:
    """One latency SLO: the metric named by `key` must be at most `limit_ms`."""

    key: str
    limit_ms: float

    @property
    def metric(self) -> str:
        """The run summary's key this SLO reads (e.g. p99_ttft_ms)."""
        return SLO_METRICS[self.key][0]

    @property
    def label(self) -> str:
        return SLO_METRICS[self.key][1]

    @property
    def text(self) -> str:
        """As typed on the command line: KEY:MS."""
        return f"{self.key}:{self.limit_ms:g}"

    def met(self, value_ms: float | None) -> bool | None:
        """Whether a measured or predicted value meets the SLO; None when there is no value (no
        request finished)."""
        if value_ms is None or math.isnan(value_ms):
            return None
        return value_ms <= self.limit_ms


def parse_slo(text: str, flag: str = "--slo") -> Slo:
    """`KEY:MS`, e.g. `ttft_p99:2000`; the key one of SLO_METRICS, MS a positive number of ms."""
    keys = ", ".join(SLO_METRICS)
    key, sep, value = str(text).partition(":")
    key = key.strip()
    if not sep:
        raise InputError(f"{flag} {text!r}: expected KEY:MS, e.g. ttft_p99:2000 (keys: {keys})")
    if key not in SLO_METRICS:
        raise InputError(f"{flag} {text!r}: unknown key {key!r} (expected one of {keys})")
    try:
        limit = float(value)
    except ValueError:
        if "," in value:
            each = " ".join(f"{flag} {part.strip()}" for part in str(text).split(","))
            raise InputError(f"{flag} {text!r}: one SLO per {flag}, e.g. {each}") from None
        raise InputError(f"{flag} {text!r}: expected a number of milliseconds after the colon, got {value!r}") from None
    if not (limit > 0 and math.isfinite(limit)):
        raise InputError(f"{flag} {text!r}: the limit must be a positive number of milliseconds, got {value!r}")
    if limit > MAX_SLO_MS:
        raise InputError(f"{flag} {text!r}: the limit must be at most {MAX_SLO_MS:,.0f} ms (a day), got {value!r}")
    return Slo(key, limit)


def parse_slos(texts: Iterable[str] | None, flag: str = "--slo") -> tuple[Slo, ...]:
    """Every `--slo` given, in the order given; a key given twice is refused (which would hold?). A
    file's list of SLOs (a manifest's `slos`) that is not a list is refused, not read letter by letter."""
    if isinstance(texts, (str, bytes, Mapping)) or not isinstance(texts, Iterable | None):
        raise InputError(f"{flag}: expected a list of KEY:MS, e.g. [ttft_p99:2000], got {texts!r}")
    slos: list[Slo] = []
    for text in texts or ():
        slo = parse_slo(text, flag)
        if any(s.key == slo.key for s in slos):
            raise InputError(f"{flag}: {slo.key} is given twice; give each key once")
        slos.append(slo)
    return tuple(slos)


def slo_status(slos: Iterable[Slo], summary: Mapping[str, object]) -> list[dict[str, object]]:
    """Each SLO against a run summary (the twin's or a measured one): key, limit, value, met."""
    rows = []
    for slo in slos:
        raw = summary.get(slo.metric)
        value = None if raw is None else float(raw)  # type: ignore[arg-type]
        rows.append({"slo": slo.key, "metric": slo.metric, "limit_ms": slo.limit_ms, "value_ms": value,
                     "met": slo.met(value)})
    return rows


def slo_line(rows: Iterable[Mapping[str, object]]) -> str:
    """`slo_status` rows in words, each value against its limit, e.g. `ttft_p99 1,234 of 2,000 ms (met)`."""
    def one(r: Mapping[str, object]) -> str:
        value = "not predicted" if r["value_ms"] is None else f"{r['value_ms']:,.0f}"
        state = "" if r["met"] is None else " (met)" if r["met"] else " (MISSED)"
        return f"{r['slo']} {value} of {r['limit_ms']:,.0f} ms{state}"
    return "; ".join(one(r) for r in rows)

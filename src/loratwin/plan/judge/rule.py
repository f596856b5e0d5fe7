"""The acceptance rule: the one answer to "is this GPU configuration acceptable?".

Estimators (the cost model, the learned models, the twin) only predict quantities (`Prediction`);
the rule holds the limits and judges every prediction the same way, whichever estimator made
it. A limit applies when the estimator predicts its quantity: the twin measures the throughput
shortfall, the cost model predicts the share of requests finishing late, the learned models a
probability of starvation, and each is held to the starvation threshold in its own terms.

Latency SLOs (`loratwin.slo`, `--slo KEY:MS`) are limits like the others, each on the quantity of
its metric (p99 TTFT, p99 ITL, p99 TPOT, mean TTFT). Given SLOs replace the wait limit, which
stands in for them when the user states none, unless `max_wait_with_slos` keeps it beside them.

A verdict names the limit that decides it and its margin ("mean wait for a batch slot 55 s of
60 s allowed"): the `pressure` of a prediction is its largest value-over-limit ratio, above 1
(at 1 for the starvation limits, whose rule is `>=`) exactly when the rule refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from loratwin.errors import InputError
from loratwin.profiles import Profile
from loratwin.slo import Slo, slo_status
from loratwin.threshold import check_threshold

STARVATION_THRESHOLD = 0.1
# The mean wait for a place in the batch (or for KV admission, or for a first token) a GPU may
# have: the starvation rule alone lets a GPU with many quiet adapters keep up while its requests
# wait minutes for their first token.
DEFAULT_MAX_WAIT_S = 60.0
# The cost model's wait is a mean: requests that wait longer than it miss the window too, so the
# share of requests it predicts to finish late is held to half the starvation threshold.
LATE_SHARE_OF_THRESHOLD = 0.5
DEFAULT_MAX_LOAD_SHARE = 0.5
# The longest window judged: a year (the twin's clock and the late share's scale stay meaningful)
MAX_WINDOW_S = 3.2e7
DEFAULT_MAX_STARVED_PROBABILITY = 0.5


def check_window(window_s: float, flag: str = "--window") -> None:
    """The window a rule judges starvation over: positive, finite, at most MAX_WINDOW_S. `flag`: the
    flag the user typed (--window, or an alias such as --duration)."""
    if not (window_s > 0 and math.isfinite(window_s)):
        raise InputError(f"{flag} must be a positive number of seconds, got {window_s:g}")
    if window_s > MAX_WINDOW_S:
        raise InputError(f"{flag} must be at most {MAX_WINDOW_S:g} s (a year: the twin's runs and the cost "
                         f"model's late share are judged over it), got {window_s:g}")


@dataclass(frozen=True)
class Prediction:
    """What an estimator predicts for one GPU at one `max_loras`. A quantity left None is one the
    estimator does not predict: the rule does not judge it."""

    max_loras: int
    predicted_tok_s: float
    shortfall: float | None = None  # 1 - served / offered tokens over the window (the twin)
    starved_probability: float | None = None  # the learned starvation classifier
    late_share: float | None = None  # share of requests that arrive too late to finish in the window
    load_share: float | None = None  # share of the time spent loading adapters
    utilisation: float | None = None  # the busiest of KV cache, max_num_seqs and token budget (0-1)
    slot_wait_s: float | None = None  # mean wait for a place in the batch (twin: requests of idle adapters)
    kv_queue_s: float | None = None  # mean wait of every request for KV admission
    mean_ttft_s: float | None = None  # mean time to first token of the completed requests (the twin)
    # the TTFT SLOs' quantities: over every request sent, one never served counted at its wait so far
    mean_ttft_all_sent_s: float | None = None
    p99_ttft_all_sent_s: float | None = None
    p99_itl_s: float | None = None
    p99_tpot_s: float | None = None
    kv_use: float | None = None  # running requests over what the KV cache holds (shown, not judged)


@dataclass(frozen=True)
class Limit:
    """One limit of the rule: a predicted quantity and the most it may be."""

    quantity: str  # a field of Prediction
    label: str
    limit: float
    unit: str = ""  # "s": seconds; "ms": seconds shown in milliseconds; "%": a share shown in percent
    refuse_at_limit: bool = False  # the published starvation rule refuses at equality
    short: str = ""  # a name for narrow tables

    def ratio(self, value: float) -> float:
        """The value over the limit (> 1, or >= 1 with `refuse_at_limit`: refused)."""
        if not math.isfinite(value):
            return math.inf
        if value <= 0:
            return 0.0
        return value / self.limit if self.limit > 0 else math.inf

    def refuses(self, ratio: float) -> bool:
        return ratio >= 1.0 if self.refuse_at_limit else ratio > 1.0

    def describe(self, value: float) -> str:
        return f"{self.label} {_fmt(value, self.unit)} of {_fmt(self.limit, self.unit)} allowed"


def _fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "unbounded"
    if unit == "%":
        return f"{100 * value:.1f}%"
    if unit == "s":
        return f"{value:.1f} s" if value < 100 else f"{value:,.0f} s"
    if unit == "ms":
        return f"{1000 * value:.1f} ms" if value < 0.1 else f"{1000 * value:,.0f} ms"
    return f"{value:.2f}"


def slo_quantity(slo: Slo) -> str:
    """The Prediction field an SLO judges: its metric in seconds (p99_itl_ms -> p99_itl_s)."""
    return slo.metric.removesuffix("_ms") + "_s"


def slo_limit(slo: Slo) -> Limit:
    """An SLO as a limit of the rule (held in seconds, shown in ms)."""
    return Limit(slo_quantity(slo), f"{slo.label} (SLO {slo.key})", slo.limit_ms / 1000, "ms", short=f"SLO {slo.key}")


@dataclass(frozen=True)
class Judgement:
    """The rule's verdict on one prediction: accepted or not, and the limit closest to (or
    furthest past) its value."""

    accepted: bool
    pressure: float  # the largest value-over-limit ratio (0 when no limit applies)
    deciding: str  # that limit described with its value, e.g. "KV cache use 96.0% of 95.0% allowed"
    quantity: str | None = None  # the deciding limit's quantity
    short: str = ""  # the deciding limit's short name

    @property
    def strain(self) -> float:
        """The pressure capped at 1e6: what a search between GPUs lowers."""
        return min(self.pressure, 1e6)


@dataclass(frozen=True)
class AcceptanceRule:
    """The limits a GPU configuration must meet. `max_wait_s=None` and `max_kv_use=None` mean: no
    wait limit, and the profile's stable KV use (`profile.placement.stable_kv_use`). `slos`: latency
    SLOs, each one more limit; with SLOs the wait limit is dropped (max_wait_s becomes None) unless
    `max_wait_with_slos` (the user typed both)."""

    starvation_threshold: float = STARVATION_THRESHOLD
    max_wait_s: float | None = DEFAULT_MAX_WAIT_S
    max_kv_use: float | None = None
    window_s: float = 3600.0
    max_load_share: float = DEFAULT_MAX_LOAD_SHARE
    max_starved_probability: float = DEFAULT_MAX_STARVED_PROBABILITY
    slos: tuple[Slo, ...] = ()
    max_wait_with_slos: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "slos", tuple(self.slos))
        keys = [s.key for s in self.slos]
        if len(set(keys)) != len(keys):
            raise InputError(f"--slo: each key once, got {', '.join(keys)}")
        if self.slos and not self.max_wait_with_slos:
            object.__setattr__(self, "max_wait_s", None)  # the SLOs state the latency the wait limit stood in for
        check_threshold(self.starvation_threshold, "--starvation-threshold")
        # every request waits a little for KV admission: a zero limit would refuse every GPU
        if self.max_wait_s is not None and not self.max_wait_s > 0:
            raise InputError(f"--max-wait must be > 0 seconds (or inf), got {self.max_wait_s:g}")
        if self.max_kv_use is not None and not 0 < self.max_kv_use <= 1:
            raise InputError(f"max_kv_use must be in (0, 1], got {self.max_kv_use:g}")
        check_window(self.window_s)

    @property
    def max_late_share(self) -> float:
        return self.starvation_threshold * LATE_SHARE_OF_THRESHOLD

    def kv_use_limit(self, profile: Profile) -> float:
        return self.max_kv_use if self.max_kv_use is not None else profile.placement.stable_kv_use

    def with_(self, **changes: object) -> AcceptanceRule:
        return replace(self, **changes)

    def limits(self, profile: Profile) -> tuple[Limit, ...]:
        """Every limit of the rule (each applies where its quantity is predicted)."""
        limits = [
            Limit("shortfall", "share of the offered load not served", self.starvation_threshold, "%", True,
                  "load not served"),
            Limit("starved_probability", "predicted probability of starving", self.max_starved_probability, "", True,
                  "P(starved)"),
            Limit("late_share", "share of requests finishing after the window", self.max_late_share, "%",
                  short="late requests"),
            Limit("load_share", "share of time loading adapters", self.max_load_share, "%", short="adapter loads"),
            Limit("utilisation", "use of KV cache, sequences or token budget", self.kv_use_limit(profile), "%",
                  short="KV/batch use"),
        ]
        if self.max_wait_s is not None:
            limits += [
                Limit("slot_wait_s", "mean wait for a batch slot", self.max_wait_s, "s", short="batch-slot wait"),
                Limit("kv_queue_s", "mean wait for KV cache admission", self.max_wait_s, "s", short="KV queue"),
                Limit("mean_ttft_s", "mean time to first token", self.max_wait_s, "s", short="mean TTFT"),
            ]
        limits += [slo_limit(slo) for slo in self.slos]
        return tuple(limits)

    def slo_values(self, prediction: Prediction) -> list[dict[str, object]]:
        """Each SLO against a prediction (`loratwin.slo.slo_status`: key, limit, value in ms, met; the
        value None where the estimator predicts none)."""
        values = {slo.metric: getattr(prediction, slo_quantity(slo)) for slo in self.slos}
        return slo_status(self.slos, {k: None if v is None else 1000 * v for k, v in values.items()})

    def slo_quantities(self) -> tuple[str, ...]:
        """The Prediction fields the SLOs judge."""
        return tuple(slo_quantity(slo) for slo in self.slos)

    def judge(self, prediction: Prediction, profile: Profile) -> Judgement:
        return self.judge_with(self.limits(profile), prediction)

    @staticmethod
    def judge_with(limits: tuple[Limit, ...], prediction: Prediction) -> Judgement:
        """`judge` with the limits resolved once (estimators judge many predictions)."""
        worst: tuple[float, Limit, float] | None = None
        refused = False
        for limit in limits:
            value = getattr(prediction, limit.quantity)
            if value is None:
                continue
            ratio = limit.ratio(float(value))
            refused = refused or limit.refuses(ratio)
            if worst is None or ratio > worst[0]:
                worst = (ratio, limit, float(value))
        if worst is None:
            return Judgement(True, 0.0, "no limit applies")
        ratio, limit, value = worst
        return Judgement(not refused, ratio, limit.describe(value), limit.quantity, limit.short)


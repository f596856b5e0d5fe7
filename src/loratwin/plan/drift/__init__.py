"""Drifting workloads: rates that change period by period (`periods`), replayed with a
re-placement every period and the twin on every GPU (`replay`)."""

from loratwin.plan.drift.periods import RATES_HEADER, Period, read_periods
from loratwin.plan.drift.replay import PeriodResult, replay_drift

__all__ = ["RATES_HEADER", "Period", "PeriodResult", "read_periods", "replay_drift"]

"""Intended send times from a rate shape: open loop, so falling behind never slows the schedule.

The cumulative count N(t) = integral of the rate from 0 to t is built on a 1 ms grid with the midpoint rule,
which is exact for constant and linear pieces whose breakpoints fall on whole milliseconds (every shape here).
Event i is due at the t where N(t) = i, so the events due in [a, b) number ceil(N(b)) - ceil(N(a)): the
integral over [a, b) within one event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.scenario import BurstShape, ConstantShape, RampShape, Scenario, StepShape


def rate_at(shape: object, rate: float, duration_ms: int, t_ms: np.ndarray) -> np.ndarray:
    """Events per second at times t_ms (milliseconds since the load began)."""
    t = np.asarray(t_ms, dtype=np.float64)
    if isinstance(shape, ConstantShape):
        return np.full_like(t, rate)
    if isinstance(shape, RampShape):
        ramp = float(shape.ramp_time or duration_ms)
        frac = np.clip(t / ramp, 0.0, 1.0)
        return shape.start_rate + (rate - shape.start_rate) * frac
    if isinstance(shape, StepShape):
        at = shape.at if shape.at is not None else duration_ms // 2
        return np.where(t < at, rate, rate * shape.factor)
    if isinstance(shape, BurstShape):
        in_burst = np.mod(t, shape.every) < shape.length
        return np.where(in_burst, rate * shape.factor, rate)
    raise TypeError(f"unknown shape {shape!r}")


@dataclass(frozen=True)
class Schedule:
    cumulative: np.ndarray  # N at each whole millisecond 0..duration (float64)

    @classmethod
    def build(cls, shape: object, rate: float, duration_ms: int) -> "Schedule":
        mid = np.arange(duration_ms, dtype=np.float64) + 0.5
        per_ms = rate_at(shape, rate, duration_ms, mid) / 1000.0
        cum = np.concatenate(([0.0], np.cumsum(per_ms)))
        return cls(cum)

    @classmethod
    def for_scenario(cls, s: Scenario) -> "Schedule":
        return cls.build(s.load.shape, s.load.rate, s.duration)

    @property
    def count(self) -> int:
        """Events due before the end of the load: those i with N^-1(i) < duration."""
        return int(np.ceil(self.cumulative[-1] - 1e-9))

    def due_ms(self, start: int, stop: int) -> np.ndarray:
        """Intended send offsets (float ms since the load began) of events start..stop-1."""
        i = np.arange(start, stop, dtype=np.float64)
        cum = self.cumulative
        k = np.searchsorted(cum, i, side="right") - 1
        k = np.clip(k, 0, len(cum) - 2)
        step = cum[k + 1] - cum[k]
        frac = np.where(step > 0, (i - cum[k]) / np.where(step > 0, step, 1.0), 0.0)
        return k + np.clip(frac, 0.0, 1.0)

    def expected_between(self, a_ms: int, b_ms: int) -> float:
        return float(self.cumulative[b_ms] - self.cumulative[a_ms])

"""Rate shapes: the events scheduled in each second equal the shape's rate integrated over it (within one)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.loadgen.schedule import Schedule
from harness.scenario import BurstShape, ConstantShape, RampShape, StepShape

DURATION = 20_000
RATE = 333.0


def integral(shape: object, a: float, b: float) -> float:
    """Events due in [a, b) ms, by calculus, independent of the schedule's numerics."""
    if isinstance(shape, ConstantShape):
        return RATE * (b - a) / 1000
    if isinstance(shape, RampShape):
        T = shape.ramp_time or DURATION
        def F(t: float) -> float:  # antiderivative of the rate (events per ms)
            if t <= T:
                return (shape.start_rate * t + (RATE - shape.start_rate) * t * t / (2 * T)) / 1000
            return F(T) + RATE * (t - T) / 1000
        return F(b) - F(a)
    if isinstance(shape, StepShape):
        at = shape.at if shape.at is not None else DURATION // 2
        lo = max(0.0, min(b, at) - a)
        hi = max(0.0, b - max(a, at))
        return (RATE * lo + RATE * shape.factor * hi) / 1000
    if isinstance(shape, BurstShape):
        total = 0.0
        for ms in range(int(a), int(b)):
            total += RATE * (shape.factor if ms % shape.every < shape.length else 1)
        return total / 1000
    raise AssertionError(shape)


SHAPES = [ConstantShape(), RampShape(), RampShape(start_rate=50, ramp_time="7500ms"), StepShape(),
          StepShape(factor=0.25, at="3s"), BurstShape(), BurstShape(factor=3, every="4s", length="700ms")]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: repr(s))
def test_events_per_second_match_the_integral(shape: object) -> None:
    sched = Schedule.build(shape, RATE, DURATION)
    due = sched.due_ms(0, sched.count)
    assert np.all(np.diff(due) >= 0) and due[-1] < DURATION
    counts = np.bincount((due // 1000).astype(int), minlength=DURATION // 1000)
    for sec, got in enumerate(counts):
        want = integral(shape, sec * 1000, (sec + 1) * 1000)
        assert abs(got - want) < 1.0 + 1e-6, (sec, got, want)
    assert sched.count == math.ceil(integral(shape, 0, DURATION) - 1e-9)


def test_tiny_rate_still_schedules_whole_events() -> None:
    sched = Schedule.build(ConstantShape(), 0.5, 10_000)
    assert sched.count == 5
    assert list(sched.due_ms(0, 5)) == pytest.approx([0, 2000, 4000, 6000, 8000])

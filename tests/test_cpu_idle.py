"""The wait for idle CPUs before an engine starts, read from /proc/stat."""

from __future__ import annotations

import pytest

from harness.metrics import cpu_idle


def test_idle_fraction_is_a_share() -> None:
    idle = cpu_idle.idle_fraction(0.2)
    assert idle is not None and 0.0 <= idle <= 1.0


def test_wait_ends_when_idle_enough_or_after_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_IDLE_WAIT", "1")
    met = cpu_idle.wait_for_idle(min_idle=0.0, window_s=0.1, max_wait_s=5)
    assert met.enabled and met.reached and met.waited_s < 1
    never = cpu_idle.wait_for_idle(min_idle=1.01, window_s=0.1, max_wait_s=0.35)   # no machine is 101% idle
    assert never.enabled and not never.reached and 0.3 <= never.waited_s < 1.0 and never.idle is not None


def test_the_tests_turn_the_wait_off() -> None:
    off = cpu_idle.wait_for_idle()
    assert not off.enabled and off.waited_s == 0 and off.idle is None

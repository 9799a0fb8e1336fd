"""The capacity search's pure parts (harness/metrics/capacity.py): step verdicts, the bracket and the next rate."""

from __future__ import annotations

import pytest

from harness.metrics import capacity as cap

BOUND = cap.latency_bound(None, 2000)


def verdict(**kw: object) -> tuple[str, str]:
    args: dict[str, object] = dict(offered=1000.0, achieved=1000.0, send_delay_p99_ms=1.0, kept_up=True,
                                   keeping_up_reason="ok", latency_p99_ms=3000.0, bound=BOUND, windows_without_final=0)
    args.update(kw)
    return cap.judge_step(**args)  # type: ignore[arg-type]


def test_latency_bound_without_slo_is_watermark_delay_plus_5_s() -> None:
    assert (BOUND.metric, BOUND.limit_ms) == ("window_close", 7000.0)
    slo = cap.latency_bound(10_000, 2000)
    assert (slo.metric, slo.limit_ms) == ("event_to_result", 10_000.0)


def test_step_verdicts() -> None:
    assert verdict()[0] == "sustainable"
    assert verdict(kept_up=False, keeping_up_reason="lag grew")[0] == "not sustainable"
    assert verdict(kept_up=None)[0] == "not sustainable"          # not judged is not a pass
    assert verdict(latency_p99_ms=7001.0)[0] == "not sustainable"
    assert verdict(latency_p99_ms=None)[0] == "not sustainable"
    assert verdict(windows_without_final=3)[0] == "not sustainable"
    # the generator falling behind outranks everything: the step says nothing about the engine
    v, why = verdict(achieved=979.0, kept_up=False)
    assert v == "machine-bound" and "2.1% below" in why
    assert verdict(achieved=981.0)[0] == "sustainable"
    assert verdict(send_delay_p99_ms=5.1)[0] == "machine-bound"
    # a machine with no CPU to spare: even a step the engine kept up with is the machine's figure, not a pass
    v, why = verdict(machine_busy_cores=1.84, machine_cores=2)
    assert v == "machine-bound" and "92% busy (1.84 of 2 cores" in why, why
    assert verdict(machine_busy_cores=1.79, machine_cores=2)[0] == "sustainable"
    assert verdict(machine_busy_cores=None, machine_cores=2)[0] == "sustainable"       # not measured
    v, why = verdict(achieved=900.0, machine_busy_cores=2.0, machine_cores=2)
    assert v == "machine-bound" and "below the" in why and "100% busy" in why           # both reasons given


def search(knee: float, start: float = 500, max_rate: float = 200_000, machine: float | None = None) -> list[float]:
    """The rates the search offers to an engine that sustains exactly the rates up to `knee`."""
    done: list[tuple[float, cap.StepVerdict]] = []
    while (r := cap.next_rate(done, start=start, max_rate=max_rate)) is not None:
        v: cap.StepVerdict = ("machine-bound" if machine is not None and r > machine else
                              "sustainable" if r <= knee else "not sustainable")
        done.append((r, v))
        assert len(done) < 30
    return [r for r, _ in done]


@pytest.mark.parametrize("knee", [777.0, 3_000.0, 12_345.0, 150_000.0])
def test_search_brackets_the_knee_within_10_percent(knee: float) -> None:
    rates = search(knee)
    b = cap.bracket([(r, "sustainable" if r <= knee else "not sustainable") for r in rates])
    assert b.low is not None and b.high is not None and b.low <= knee < b.high
    assert b.high - b.low < 0.10 * b.low
    assert rates[:2] == [500, 1000]                                # doubling first


def test_search_halves_below_a_first_failure_and_stops_at_the_maximum() -> None:
    rates = search(180.0)
    assert rates[:3] == [500, 250, 125]
    b = cap.bracket([(r, "sustainable" if r <= 180 else "not sustainable") for r in rates])
    assert b.low is not None and b.high is not None and b.low <= 180 < b.high and b.narrow
    assert search(10.0)[-1] >= cap.MIN_RATE                       # never below the minimum
    assert search(1e9, max_rate=4000) == [500, 1000, 2000, 4000]  # no knee below the maximum


def test_machine_bound_step_is_the_upper_bracket() -> None:
    rates = search(1e9, machine=20_000)
    verdicts = [(r, "machine-bound" if r > 20_000 else "sustainable") for r in rates]
    b = cap.bracket(verdicts)  # type: ignore[arg-type]
    assert b.low is not None and b.high is not None and b.low <= 20_000 < b.high and b.narrow


def test_a_hiccup_below_the_knee_is_confirmed_away() -> None:
    """The staircase as harness/run/capacity.py drives it: a step that fails is repeated once, and a spurious
    machine-bound step at 2,000 (its repeat passes) does not cap a knee at 3,000."""
    knee, hiccups = 3000.0, {2000.0: 1}
    done: list[tuple[float, cap.StepVerdict]] = []
    for _ in range(30):
        if cap.needs_confirmation(done):
            r = done[-1][0]
        else:
            nxt = cap.next_rate(done, start=500, max_rate=200_000)
            if nxt is None:
                break
            r = nxt
        if hiccups.get(r):
            hiccups[r] -= 1
            v: cap.StepVerdict = "machine-bound"
        else:
            v = "sustainable" if r <= knee else "not sustainable"
        done.append((r, v))
    b = cap.bracket(done)
    assert b.low is not None and b.high is not None and b.low <= knee < b.high and b.narrow
    assert done[:5] == [(500, "sustainable"), (1000, "sustainable"), (2000, "machine-bound"), (2000, "sustainable"),
                        (4000, "not sustainable")] and done[5] == (4000, "not sustainable")
    assert not cap.needs_confirmation([(100.0, "sustainable")]) and cap.needs_confirmation([(100.0, "machine-bound")])


def test_a_slowly_settling_engine_is_held_to_long_steps() -> None:
    """The staircase as harness/run/capacity.py drives a slowly settling engine: short steps pass up to 96,000
    (its batches have not lengthened yet), long ones only up to 60,000. The search ends on a long step's pass,
    every step after the first failure is long, and no long step is repeated."""
    short_knee, long_knee = 96_000.0, 60_000.0
    done: list[cap.LongStep] = []
    phases = []
    for _ in range(30):
        plain = [(r, v) for r, v, _ in done]
        b = cap.bracket(cap.settled(done))
        long = b.high is not None
        if cap.needs_confirmation(plain) and not done[-1][2]:
            r, long, phase = done[-1][0], False, "confirmation"
        else:
            nxt = cap.next_rate(cap.settled(done), start=500, max_rate=200_000)
            if nxt is None and cap.needs_hold(done):
                assert b.low is not None
                r, long, phase = b.low, True, "hold"
            elif nxt is None:
                break
            else:
                r, phase = nxt, "search"
        v: cap.StepVerdict = "sustainable" if r <= (long_knee if long else short_knee) else "not sustainable"
        done.append((r, v, long))
        phases.append(phase)
    b = cap.bracket(cap.settled(done))
    assert b.low is not None and b.high is not None and b.low <= long_knee < b.high and b.narrow
    assert any(long and r == b.low and v == "sustainable" for r, v, long in done)      # held
    first_fail = next(i for i, (_, v, _) in enumerate(done) if v != "sustainable")
    assert done[first_fail][0] == 128_000 and not done[first_fail][2]
    assert done[first_fail + 1] == (128_000, "not sustainable", False)               # the short repeat
    assert all(long for _, _, long in done[first_fail + 2:])
    assert "hold" in phases and len(done) < 25
    # a short pass at or above a long failure no longer counts; below it, it still does
    voided = cap.settled([(64_000, "sustainable", False), (80_000, "sustainable", False), (72_000, "not sustainable", True)])
    assert cap.bracket(voided) == cap.Bracket(64_000, 72_000)
    assert not cap.needs_hold([(64_000, "sustainable", True), (72_000, "not sustainable", True)])

"""Capacity: is one step of a staircase sustainable, and which rate to offer next.

Definitions (the README's capacity section quotes these):
- a step is **sustainable** when, after its warm-up, the engine kept up (harness/metrics/keeping_up.py: the
  least-squares lag slope is under LAG_SLOPE_SHARE of the acknowledged rate and the read rate is within
  IN_RATE_SHORTFALL of it, beyond the lag's sampling noise) and its p99 latency meets the bound: the scenario's
  `slo.p99_latency` on event-to-result latency from the intended send time, or, without one, a window-close
  p99 of at most the watermark delay + DEFAULT_CLOSE_SLACK_MS;
- a step is **machine-bound** when the generator itself fell behind: its achieved rate more than
  GEN_RATE_SHORTFALL below the offered rate, or its send-delay p99 above GEN_SEND_DELAY_P99_MS; or when the
  machine ran out of CPU: after the warm-up its CPUs were at least MACHINE_BUSY_SHARE busy (/proc/stat, every
  process). It brackets the knee from above and is never a pass. Why the second: on two cores Flink near its
  knee used 1.33-1.38 cores beside the broker's 0.11-0.17 and the generator's 0.29-0.37, 1.85 of 2, and two
  searches put its knee at 40,000 and 32,000 events/s: what they measured was how much CPU the engine got,
  which varies with whatever else the machine does. A rate it sustains only by taking the whole machine is
  the machine's figure, and the report says so;
- the **search**: doubling from the start rate until a step is not sustainable, then bisection between the
  highest sustainable rate and the lowest rate that was not, until the bracket is narrower than BRACKET_SHARE of
  its lower end. A first step that fails halves downwards instead, to MIN_RATE;
- **confirmation**: a step that is not sustainable is run once more at the same rate before the search moves
  on, and the rate passes when the repeat does: on a shared machine one hiccup (a collection in the broker, a
  burst of engine work) can push one step's send-delay p99 over its bound, and a single such step would
  otherwise set the bracket;
- **settling** (engines whose plan says `settles_slowly`, Spark's micro-batches): a micro-batch engine's
  batches lengthen under a load it cannot take, but near its knee they do so over tens of seconds (Spark at
  80,000 events/s here: 3 s batches at 20 s into a step, 15 s batches at 60 s, p99 41 s), so a --step of 20 s
  passed rates that a minute did not, and two searches put its knee 20% apart. After the doubling's first
  failure, its steps run SETTLE_FACTOR times as long (and are not repeated); a long step that is not
  sustainable voids every short pass at or above its rate; and the search ends only once the bracket's lower
  end was held for a long step (phase "hold");
- the **sustainable rate** is the bracket's lower end: the highest rate measured sustainable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

GEN_RATE_SHORTFALL = 0.02
GEN_SEND_DELAY_P99_MS = 5.0
MACHINE_BUSY_SHARE = 0.90
DEFAULT_CLOSE_SLACK_MS = 5_000
BRACKET_SHARE = 0.10
MIN_RATE = 50.0
SETTLE_FACTOR = 3

StepVerdict = Literal["sustainable", "not sustainable", "machine-bound"]


@dataclass(frozen=True)
class LatencyBound:
    metric: Literal["event_to_result", "window_close"]
    limit_ms: float
    source: str          # where the bound comes from, for the report


def latency_bound(slo_p99_ms: Optional[int], watermark_delay_ms: int) -> LatencyBound:
    if slo_p99_ms is not None:
        return LatencyBound("event_to_result", float(slo_p99_ms), "the scenario's slo.p99_latency (event-to-result "
                                                                  "from the intended send time)")
    return LatencyBound("window_close", float(watermark_delay_ms + DEFAULT_CLOSE_SLACK_MS),
                        f"no slo.p99_latency: window-close p99 at most the watermark delay "
                        f"({watermark_delay_ms / 1000:g} s) + {DEFAULT_CLOSE_SLACK_MS / 1000:g} s")


def generator_fell_behind(offered: float, achieved: Optional[float], send_delay_p99_ms: Optional[float]) -> Optional[str]:
    """Why the generator fell behind its schedule in a step, or None when it kept to it."""
    why = []
    if achieved is not None and achieved < (1 - GEN_RATE_SHORTFALL) * offered:
        why.append(f"the generator achieved {achieved:,.0f} events/s, {1 - achieved / offered:.1%} below the "
                   f"{offered:,.0f} offered")
    if send_delay_p99_ms is not None and send_delay_p99_ms > GEN_SEND_DELAY_P99_MS:
        why.append(f"its send-delay p99 was {send_delay_p99_ms:,.1f} ms (over {GEN_SEND_DELAY_P99_MS:g} ms)")
    return "; ".join(why) or None


def machine_saturated(busy_cores: Optional[float], cores: Optional[int]) -> Optional[str]:
    """Why the machine had no CPU to spare in a step, or None when it had (or it was not measured)."""
    if busy_cores is None or not cores or busy_cores < MACHINE_BUSY_SHARE * cores:
        return None
    return (f"the machine's CPUs were {busy_cores / cores:.0%} busy ({busy_cores:.2f} of {cores} cores, at least "
            f"{MACHINE_BUSY_SHARE:.0%}): the engine had no more CPU to take")


def judge_step(*, offered: float, achieved: Optional[float], send_delay_p99_ms: Optional[float],
               kept_up: Optional[bool], keeping_up_reason: str, latency_p99_ms: Optional[float],
               bound: LatencyBound, windows_without_final: int, machine_busy_cores: Optional[float] = None,
               machine_cores: Optional[int] = None) -> tuple[StepVerdict, str]:
    machine = "; ".join(filter(None, [generator_fell_behind(offered, achieved, send_delay_p99_ms),
                                      machine_saturated(machine_busy_cores, machine_cores)]))
    if machine:
        return "machine-bound", machine
    why = []
    if kept_up is not True:
        why.append("did not keep up: " + keeping_up_reason if kept_up is False else
                   "keeping up not judged: " + keeping_up_reason)
    if windows_without_final:
        why.append(f"{windows_without_final} windows had no final value when the step's wait ended")
    if latency_p99_ms is None:
        why.append(f"no {bound.metric.replace('_', '-')} latency measured")
    elif latency_p99_ms > bound.limit_ms:
        why.append(f"{bound.metric.replace('_', '-')} p99 {latency_p99_ms / 1000:,.2f} s over the "
                   f"{bound.limit_ms / 1000:g} s bound")
    if why:
        return "not sustainable", "; ".join(why)
    return "sustainable", (f"kept up ({keeping_up_reason}); {bound.metric.replace('_', '-')} p99 "
                           f"{(latency_p99_ms or 0) / 1000:,.2f} s within {bound.limit_ms / 1000:g} s")


@dataclass(frozen=True)
class Bracket:
    low: Optional[float]    # highest rate measured sustainable
    high: Optional[float]   # lowest rate measured not sustainable or machine-bound

    @property
    def narrow(self) -> bool:
        return self.low is not None and self.high is not None and self.high - self.low < BRACKET_SHARE * self.low


def bracket(steps: list[tuple[float, StepVerdict]]) -> Bracket:
    passed = [r for r, v in steps if v == "sustainable"]
    low = max(passed) if passed else None
    above = [r for r, v in steps if v != "sustainable" and (low is None or r > low)]
    return Bracket(low, min(above) if above else None)


def needs_confirmation(steps: list[tuple[float, StepVerdict]]) -> bool:
    """The last step was not sustainable and its rate has not been repeated yet."""
    if not steps or steps[-1][1] == "sustainable":
        return False
    return sum(1 for r, _ in steps if r == steps[-1][0]) == 1


def next_rate(steps: list[tuple[float, StepVerdict]], *, start: float, max_rate: float) -> Optional[float]:
    """The next rate to offer after `steps` (rate, verdict) in the order run, or None when the search is done.

    A sustainable step above a failed one (noise near the knee) moves the bracket's lower end up; the bracket is
    always between the highest pass and the lowest non-pass above it."""
    if not steps:
        return start
    b = bracket(steps)
    if b.narrow:
        return None
    if b.high is None:                      # every step so far was sustainable: keep doubling
        assert b.low is not None
        if b.low >= max_rate:
            return None
        return min(b.low * 2, max_rate)
    if b.low is None:                       # nothing sustainable yet: halve below the lowest failure
        nxt = b.high / 2
        return nxt if nxt >= MIN_RATE else None
    return round((b.low + b.high) / 2, 1)


LongStep = tuple[float, StepVerdict, bool]      # rate, verdict, whether it ran SETTLE_FACTOR times as long


def settled(steps: list[LongStep]) -> list[tuple[float, StepVerdict]]:
    """The steps a slowly settling engine's bracket is drawn from: a long step that was not sustainable voids
    every short step's pass at or above its rate (those passed before the batches had lengthened)."""
    failed_long = [r for r, v, long in steps if long and v != "sustainable"]
    floor = min(failed_long) if failed_long else float("inf")
    return [(r, v) for r, v, long in steps if long or v != "sustainable" or r < floor]


def needs_hold(steps: list[LongStep]) -> bool:
    """The bracket's lower end has passed only short steps: it must hold for a long one before the search ends."""
    low = bracket(settled(steps)).low
    return low is not None and not any(long and r == low and v == "sustainable" for r, v, long in steps)

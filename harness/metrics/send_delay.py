"""Whether the generator kept to its schedule during a load.

Latency is measured from the intended send time, so a generator that falls behind no longer hides its delay
from the figures; but a run whose generator fell behind measured the machine as much as the engine, and is
flagged. The floor is what the generator's own process keeps to on this machine with an engine running beside
it (the closing note of the integrity issue gives the figures), with headroom.
"""

from __future__ import annotations

from typing import Optional

from harness.results.document import GeneratorCheck

FLOOR_MS = 5.0
SHARE_OF_P50 = 0.01


def judge(send_delay_p99_ms: Optional[float], latency_p50_ms: Optional[float]) -> GeneratorCheck:
    threshold = max(FLOOR_MS, SHARE_OF_P50 * latency_p50_ms) if latency_p50_ms is not None else FLOOR_MS
    threshold = round(threshold, 3)
    if send_delay_p99_ms is None:
        return GeneratorCheck(fell_behind=False, threshold_ms=threshold, reason="no events were sent")
    behind = send_delay_p99_ms > threshold
    verdict = "over" if behind else "within"
    return GeneratorCheck(
        fell_behind=behind, send_delay_p99_ms=send_delay_p99_ms, threshold_ms=threshold,
        reason=f"send-delay p99 {send_delay_p99_ms:.1f} ms is {verdict} max({FLOOR_MS:g} ms, "
               f"{SHARE_OF_P50:.0%} of the event-to-result p50)")

"""Backlog mode's figures: how fast an engine drains a topic that was filled before it started, and what one
scheduled run of an interval (batch) job costs, with the latency that schedule gives.

Definitions (the README's backlog section quotes these):
- drain time: from the engine running (its wait_running returned) to the first sample at which the engine has
  read every record the topic held at its first sample, within the lag's sampling noise
  (keeping_up.LAG_NOISE_RECORDS or LAG_NOISE_SECONDS of the scenario's rate). Records that arrive meanwhile
  (heartbeats) do not count: an interval job reads them only at its next run;
- answer time: from the engine running to its final answer (every promised window holds its value);
- events per second: the load's events over the drain time; per core: that over the cores the engine used
  meanwhile (its CPU seconds over the drain, from its cgroup where it has one);
- CPU seconds per million events: the engine's CPU from running to its answer, per million events;
- modelled latency of an interval job: runs start at the time base plus every whole interval (as cron would);
  a window is emitted by the first run that starts at or after its end plus the grace, and is in the sink when
  that run is done. Its latency is the wait for that run plus the measured duration of one run over a full
  interval of data (the backlog's answer time): window end + wait + run time - window end.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from harness.metrics import keeping_up
from harness.metrics import throughput as flow
from harness.metrics.stats import percentiles


def drain_allowance(rate: float) -> float:
    """Records an engine may still be short of what the topic held and count as having drained it."""
    return max(keeping_up.LAG_NOISE_RECORDS, keeping_up.LAG_NOISE_SECONDS * rate)


def drained(row: dict[str, Any], first: dict[str, Any], rate: float) -> bool:
    """Whether, at `row`, the engine has read what the topic held at the run's first sample `first`: its read
    position (the topic's end offsets less its lag) is within the allowance of those end offsets."""
    if row.get("lag") is None or row.get("end_offsets") is None or first.get("end_offsets") is None:
        return False
    return row["end_offsets"] - row["lag"] >= first["end_offsets"] - drain_allowance(rate)


def drain(rows: list[dict[str, Any]], *, running_ms: int, drained_ms: Optional[int], answer_ms: Optional[int],
          events: int, records_in_topic: Optional[int], cpu_col: str) -> dict[str, Any]:
    drain_s = (drained_ms - running_ms) / 1000 if drained_ms is not None else None
    answer_s = (answer_ms - running_ms) / 1000 if answer_ms is not None else None
    cpu_drain = flow.used_between(rows, cpu_col, running_ms, drained_ms) if drained_ms is not None else None
    cpu_answer = flow.used_between(rows, cpu_col, running_ms, answer_ms) if answer_ms is not None else None
    rate = events / drain_s if drain_s else None
    cores = cpu_drain / drain_s if cpu_drain is not None and drain_s else None
    rss = [r["rss_mb"] for r in rows if r.get("rss_mb") is not None]
    return {
        "events": events, "records_in_topic": records_in_topic,
        "drain_s": None if drain_s is None else round(drain_s, 3),
        "answer_s": None if answer_s is None else round(answer_s, 3),
        "events_per_s": None if rate is None else round(rate, 1),
        "cores": None if cores is None else round(cores, 3),
        "events_per_s_per_core": round(rate / cores, 1) if rate is not None and cores else None,
        "cpu_seconds_per_million": round(cpu_answer / (events / 1e6), 2) if cpu_answer is not None and events else None,
        "peak_rss_mb": max(rss) if rss else None,
    }


def modelled_interval_latency(window_end_ms: np.ndarray, *, time_base_ms: int, interval_ms: int, grace_ms: int,
                              run_ms: float) -> dict[str, Any]:
    """Percentiles (ms) of each window's latency under a schedule of runs every interval_ms from the time base,
    each taking run_ms."""
    ends = np.asarray(window_end_ms, dtype=np.float64) - time_base_ms
    runs_at = np.ceil((ends + grace_ms) / interval_ms) * interval_ms
    return percentiles(runs_at - ends + run_ms)

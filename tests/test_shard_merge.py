"""The shards' figures merged into one load's (harness/run/locust_load.py): each event's times from the shard that
sent it, offsets per partition from its one shard, counters added up."""

from __future__ import annotations

from array import array

import numpy as np
import pytest

from harness.loadgen.generator import SendStats
from harness.run.locust_load import merge_shards


def shard(owned_events: list[int], times: list[int], parts: dict[int, list[int]], *, acked: int,
          sent: int = 6) -> SendStats:
    handoff = np.zeros(6, dtype=np.int64)
    delay = np.zeros(6)
    for e, t in zip(owned_events, times):
        handoff[e] = t
        delay[e] = t - 1000 - 100 * e
    return SendStats(scheduled=6, time_base_ms=1000, handoff_ms=handoff, send_delay_ms=delay, sent=sent,
                     acked=acked, heartbeats_sent=4, acked_per_second={0: acked},
                     sent_per_second={0: len(owned_events)}, first_handoff_ms=min(times),
                     last_handoff_ms=max(times), last_ack_ms=max(times) + 5,
                     offsets={p: array("q", o) for p, o in parts.items()}, shard_events=len(owned_events),
                     shard_mask=handoff[:sent] > 0, ack_latency_ms=[1.0] * acked)


def test_merge_is_the_single_generators_figures() -> None:
    a = shard([0, 2, 3], [1001, 1201, 1302], {0: [0, 1], 2: [0]}, acked=3)
    b = shard([1, 4, 5], [1103, 1400, 1500], {1: [0, 1, 2]}, acked=3)
    m = merge_shards([a, b])
    assert m.handoff_ms.tolist() == [1001, 1103, 1201, 1302, 1400, 1500]
    assert m.send_delay_ms.tolist() == [1, 3, 1, 2, 0, 0]
    assert m.sent == 6 and m.acked == 6 and m.heartbeats_sent == 8 and m.shard_mask is None
    assert sorted(m.offsets) == [0, 1, 2] and list(m.offsets[1]) == [0, 1, 2]
    assert m.acked_per_second == {0: 6} and m.sent_per_second == {0: 6}
    assert (m.first_handoff_ms, m.last_handoff_ms, m.last_ack_ms) == (1001, 1500, 1505)
    assert not m.interrupted and m.summary()["send_delay_ms"]["max"] == 3


def test_a_shard_that_stopped_short_marks_the_merge_interrupted() -> None:
    a = shard([0, 2], [1001, 1201], {0: [0, 1]}, acked=2, sent=3)
    b = shard([1, 4, 5], [1103, 1400, 1500], {1: [0, 1, 2]}, acked=3)
    assert merge_shards([a, b]).interrupted


def test_two_shards_on_one_partition_are_refused() -> None:
    a = shard([0], [1001], {0: [0]}, acked=1)
    b = shard([1], [1101], {0: [1]}, acked=1)
    with pytest.raises(ValueError, match="partition 0"):
        merge_shards([a, b])


def test_client_log_keeps_each_distinct_warning_once_and_counts_the_unacknowledged() -> None:
    """A down broker refuses a connection every quarter second: the producer's log says so once, with a count,
    and a load whose delivery reports never came says how many (SendStats.summary)."""
    from harness.loadgen.generator import ClientLog

    log = ClientLog(keep=2)
    for _ in range(3):
        log.log(30, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "Connect refused")
    log.log(7, "a debug line is dropped")
    log.log(40, "%s [%s] %s", "ERROR", "rdkafka#producer-1", "all brokers down")
    [refused, down] = log.lines()
    assert refused.endswith("×3 warning FAIL [rdkafka#producer-1] Connect refused"), refused
    assert down.endswith(" error ERROR [rdkafka#producer-1] all brokers down") and "×" not in down, down
    log.log(30, "third")                        # over `keep`: the oldest distinct message goes
    assert [line.split(" ", 1)[1] for line in log.lines()] == ["error ERROR [rdkafka#producer-1] all brokers down",
                                                               "warning third"]
    a = shard([0, 2, 3], [1001, 1201, 1302], {0: [0, 1], 2: [0]}, acked=2, sent=6)
    a.delivery_errors, a.client_log = 1, log.lines()
    s = a.summary()
    assert s["unacknowledged"] == 3 and s["client_log"] == log.lines()

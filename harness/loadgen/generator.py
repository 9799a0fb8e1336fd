"""Paced, open-loop producing with confluent-kafka: intended time, hand-off time and acknowledgement per event.

Heartbeats go to every partition at a fixed interval, during and after the load, so watermarks keep moving when
data stops or a partition gets few keys. A heartbeat's event time is the schedule's own clock (the intended
time of the next event still to send, never later than now), so a generator that falls behind cannot push a
watermark past data it has not sent yet.

HARNESS_FAULT_SEND_DELAY_MS (test-only) holds every hand-off that many ms behind its intended time for the
whole load, as a generator starved of CPU would be; intended times, and so ground truth's, stay the schedule's.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from confluent_kafka import KafkaError, Producer

from harness.loadgen.encoding import Encoder, JsonEncoder
from harness.loadgen.events import HEARTBEAT_KEY, EventModel, key_name
from harness.loadgen.priority import realtime_sending
from harness.scenario import Scenario
from harness.stack.probes import kafka_conf

# Events are prepared (drawn and encoded) a block at a time, inline between sends. Unpaced, big blocks are
# cheapest per event. Paced, a block's preparation holds up the events due while it runs: 20,000 took about
# 30 ms beside an engine, which at 10,000 events/s put more than 1% of events over the 5 ms send-delay bound,
# and capacity steps were labelled machine-bound by the generator's own pauses. 1,000 take about 1.5 ms.
BLOCK = 20_000
PACED_BLOCK = 1_000
# The shortest sleep while waiting for an event's intended time. Sleeping closer and closer to it (halving the
# wait) cost a few syscalls per event: at 56,000 events/s the sending thread spent 17 us an event, 96% of a core,
# against 3.2 us unpaced, and with no headroom any pause (a burst of thousands of delivery reports) grew into a
# send-delay p99 over 5 ms. Now an event due sooner than this waits this long, and those due by the wake-up go
# out together: the hand-off is at most this much later than intended.
SLEEP_QUANTUM_NS = 100_000
# An event's offset while its delivery report is outstanding, and when the broker refused it: for its size
# (ground truth leaves it out), or for any other reason (it stays in, and delivery_errors flags the load).
OFFSET_UNKNOWN, OFFSET_FAILED, OFFSET_TOO_LARGE = -1, -2, -3
PRODUCER_SETTINGS: dict[str, object] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 2_000_000,
    "compression.type": "none",
    # librdkafka gives every message a delivery report by this time at the latest, acknowledged or failed. The
    # generator waits that long for the last reports (DELIVERY_WAIT_S), so no event's fate is left unknown: a
    # broker that stayed away longer than the 30 s it used to wait (a restart_broker fault on a slow machine)
    # had left a CI run's events neither acknowledged nor failed, and ground truth unable to place them.
    "message.timeout.ms": 120_000,
}
DELIVERY_WAIT_S = 130.0
# librdkafka's own warnings and errors (refused connections, a partition without a leader, a fatal idempotence
# error): kept, the newest last, so a load whose events stayed unacknowledged says what its client saw.
CLIENT_LOG_KEEP = 40


@dataclass
class SendStats:
    """What the generator did, as measured while it did it (times are wall-clock epoch milliseconds)."""

    scheduled: int
    time_base_ms: int
    handoff_ms: np.ndarray             # per event: when it was handed to the producer (its sent_at)
    send_delay_ms: np.ndarray          # per event: hand-off minus intended time
    ack_latency_ms: list[float] = field(default_factory=list)
    sent: int = 0
    acked: int = 0
    delivery_errors: int = 0
    last_error: str | None = None
    heartbeats_sent: int = 0
    heartbeats_acked: int = 0
    acked_per_second: dict[int, int] = field(default_factory=dict)   # second since the time base -> events
    sent_per_second: dict[int, int] = field(default_factory=dict)
    first_handoff_ms: int | None = None
    last_handoff_ms: int | None = None
    last_ack_ms: int | None = None
    finished_ms: int | None = None
    interrupted: bool = False
    # per partition, each event's offset in the order its delivery report came: per partition that is the order
    # it was produced in (the idempotent producer keeps it), so event i's offset is found without a lookup
    offsets: dict[int, array] = field(default_factory=dict)    # array("q"): 8 bytes an event
    refused_too_large: int = 0
    # a shard (--shard i/N): `sent` still counts the schedule's events up to where it got; these are its own
    shard_events: int = 0
    shard_mask: np.ndarray | None = None    # over the first `sent` events: the ones this shard sent
    nice: int | None = None                 # the generator's nice value (None: not set by it)
    scheduler: str | None = None            # the sending thread's real-time policy (None: ordinary)
    client_log: list[str] = field(default_factory=list)   # librdkafka's warnings and errors, the newest last

    def summary(self) -> dict[str, object]:
        from harness.metrics.stats import percentiles

        delay = self.send_delay_ms[: self.sent]
        if self.shard_mask is not None:
            delay = delay[self.shard_mask]
        span_s = ((self.last_ack_ms or 0) - (self.first_handoff_ms or 0)) / 1000.0
        return {
            "events_scheduled": self.scheduled,
            "events_sent": self.sent,
            "events_acked": self.acked,
            "delivery_errors": self.delivery_errors,
            "refused_too_large": self.refused_too_large,
            "last_delivery_error": self.last_error,
            "heartbeats_sent": self.heartbeats_sent,
            "heartbeats_acked": self.heartbeats_acked,
            "achieved_rate_eps": round(self.acked / span_s, 1) if span_s > 0 else None,
            "send_delay_ms": percentiles(delay),
            "ack_latency_ms": percentiles(np.asarray(self.ack_latency_ms)),
            "first_handoff_ms": self.first_handoff_ms,
            "last_handoff_ms": self.last_handoff_ms,
            "last_ack_ms": self.last_ack_ms,
            "interrupted": self.interrupted,
            "nice": self.nice,
            "scheduler": self.scheduler,
            "unacknowledged": max(0, self.sent - self.acked - self.delivery_errors),
            "client_log": list(self.client_log),
        }


Progress = Callable[[SendStats], None]


class ClientLog(logging.Logger):
    """The producer's `logger` and error callback: librdkafka's warnings and errors, each distinct message once
    with how often and when it came (a down broker refuses a connection every quarter second), the newest last.
    Thread-safe enough for librdkafka's threads: one dict operation per line under the GIL."""

    def __init__(self, keep: int = CLIENT_LOG_KEEP) -> None:
        super().__init__("harness.loadgen.client")
        self.keep = keep
        self._seen: dict[str, tuple[str, str, int]] = {}      # message -> (first hh:mm:ss, last, count)

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if level >= logging.WARNING:
            self.add(f"{logging.getLevelName(level).lower()} " + (str(msg) % args if args else str(msg)))

    def on_error(self, err: KafkaError) -> None:
        self.add(f"error {err.name()}: {err.str()}" + (" (fatal)" if err.fatal() else ""))

    def add(self, text: str) -> None:
        now = time.strftime("%H:%M:%S")
        first, _, n = self._seen.pop(text, None) or (now, now, 0)
        self._seen[text] = (first, now, n + 1)     # re-inserted: the dict's order is the newest last
        while len(self._seen) > self.keep:
            self._seen.pop(next(iter(self._seen)))

    def lines(self) -> list[str]:
        return [f"{first}" + (f"–{last} ×{n}" if n > 1 else "") + f" {text}"
                for text, (first, last, n) in list(self._seen.items())]


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (`--shard i/N`): it owns the partitions p with p % count == index."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise ValueError(f"--shard takes i/N with 0 <= i < N (e.g. 0/2), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def partitions(self, partitions: int) -> list[int]:
        owned = [p for p in range(partitions) if p % self.count == self.index]
        if not owned:
            raise ValueError(f"shard {self.index}/{self.count} owns none of the topic's {partitions} partitions: "
                             f"use at most {partitions} shards")
        return owned


def event_offsets(partitions: np.ndarray, delivered: dict[int, array]) -> np.ndarray:
    """Per event (partitions[i] is event i's partition, in the order they were sent), its offset or an OFFSET_*
    code, from SendStats.offsets."""
    out = np.full(len(partitions), OFFSET_UNKNOWN, dtype=np.int64)
    for p, offs in delivered.items():
        where = np.flatnonzero(partitions == p)
        n = min(len(where), len(offs))
        out[where[:n]] = np.frombuffer(offs, dtype=np.int64, count=n)
    return out


def size_settings(scenario: Scenario) -> dict[str, object]:
    """With a topic size limit: the producer's own limit above it, so the broker is the one that refuses a record
    over it, and batches under it, so a batch of small records never is refused (a record larger than
    batch.size travels in a batch of its own)."""
    limit = scenario.topic.max_message_bytes
    if limit is None:
        return {}
    return {"message.max.bytes": 2 * limit + 4096, "batch.size": min(1_000_000, limit - 2048)}


class LoadGenerator:
    def __init__(self, scenario: Scenario, bootstrap: str, topic: str, *, encoder: Encoder | None = None,
                 model: EventModel | None = None, producer_settings: dict[str, object] | None = None,
                 shard: Shard | None = None, cooperative: bool = False) -> None:
        self.s = scenario
        # cooperative: inside gevent (a Locust worker), where a blocking poll() or flush() would stop every
        # greenlet: produce() and poll(0) only, and time.sleep, which gevent patches, to wait
        self.cooperative = cooperative
        self.topic = topic
        self.model = model or EventModel(scenario)
        self.encoder = encoder or JsonEncoder(scenario.load.payload_bytes, scenario.topic.max_message_bytes)
        self.partitions = scenario.topic.partitions
        # A shard sends every event of the partitions it owns, and heartbeats to those only: a partition's
        # watermark markers then come from the producer that sends its data, so none overtakes an event.
        self.shard = shard
        self.owned = shard.partitions(self.partitions) if shard else list(range(self.partitions))
        self.client_log = ClientLog()
        self.producer = Producer(kafka_conf(bootstrap, **{**PRODUCER_SETTINGS, **size_settings(scenario),
                                                          **(producer_settings or {})},
                                            logger=self.client_log, error_cb=self.client_log.on_error))
        self.stop = threading.Event()
        self.load_done = threading.Event()  # set once every event has been handed to the producer
        self.stats: SendStats | None = None
        self.nice: int | None = None
        self._hb_key = HEARTBEAT_KEY.encode()
        self._key_cache: dict[int, bytes] = {}

    # -- delivery reports ------------------------------------------------------------------------------
    def _poll(self, stats: SendStats, timeout: float = 0.0) -> None:
        self._poll_now_ms = time.time_ns() // 1_000_000
        self._stats = stats
        if self.cooperative:        # never block in C: sleep is what gevent can switch on
            self.producer.poll(0)
            if timeout > 0:
                time.sleep(timeout)
            return
        self.producer.poll(timeout)

    def _on_event_delivery(self, err: object, msg: object) -> None:
        st = self._stats
        offs = st.offsets.get(msg.partition())  # type: ignore[attr-defined]
        if offs is None:
            offs = st.offsets[msg.partition()] = array("q")  # type: ignore[attr-defined]
        if err is not None:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:  # type: ignore[attr-defined]
                st.refused_too_large += 1
                offs.append(OFFSET_TOO_LARGE)
            else:
                offs.append(OFFSET_FAILED)
            st.delivery_errors += 1
            st.last_error = str(err)
            return
        offs.append(msg.offset())  # type: ignore[attr-defined]
        st.acked += 1
        st.ack_latency_ms.append(msg.latency() * 1000.0)  # type: ignore[attr-defined]
        sec = (self._poll_now_ms - st.time_base_ms) // 1000
        st.acked_per_second[sec] = st.acked_per_second.get(sec, 0) + 1
        st.last_ack_ms = self._poll_now_ms

    def _on_heartbeat_delivery(self, err: object, msg: object) -> None:
        if err is None:
            self._stats.heartbeats_acked += 1

    # -- sending ---------------------------------------------------------------------------------------
    def _produce(self, stats: SendStats, value: bytes, key: bytes, partition: int, cb: Callable) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, key, partition=partition, on_delivery=cb)
                return
            except BufferError:  # the local queue is full: serve delivery reports and retry
                self._poll(stats, 0.05)

    def _heartbeats(self, stats: SendStats, schedule_clock_ms: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        et = min(now_ms, schedule_clock_ms)
        for p in self.owned:
            self._produce(stats, self.encoder.heartbeat(et, now_ms), self._hb_key, p, self._on_heartbeat_delivery)
        stats.heartbeats_sent += len(self.owned)

    def _key(self, idx: int) -> bytes:
        k = self._key_cache.get(idx)
        if k is None:
            k = self._key_cache[idx] = key_name(idx).encode()
        return k

    def run(self, time_base_ms: int, *, heartbeat_until_ms: int | None = None, paced: bool = True,
            progress: Progress | None = None, progress_every_s: float = 0.5) -> SendStats:
        """Send the whole load starting at time_base_ms (epoch ms, wall clock), then heartbeats until
        heartbeat_until_ms (or until stop is set). Unpaced sends as fast as possible (benchmarks)."""
        n = self.model.count
        stats = SendStats(scheduled=n, time_base_ms=time_base_ms,
                          handoff_ms=np.zeros(n, dtype=np.int64), send_delay_ms=np.zeros(n, dtype=np.float64),
                          nice=self.nice)
        self._stats = stats
        self.stats = stats
        self._poll_now_ms = time.time_ns() // 1_000_000
        t0_ns = time_base_ms * 1_000_000
        held_ns = int(os.environ.get("HARNESS_FAULT_SEND_DELAY_MS", "0") or 0) * 1_000_000
        hb_every_ns = self.s.load.heartbeat_interval * 1_000_000
        next_hb = t0_ns
        next_progress = time.monotonic()
        produce = self.producer.produce
        finish = self.encoder.finish
        topic = self.topic
        cb = self._on_event_delivery
        parts_n = self.partitions
        clock = time.time_ns
        owned = None if self.shard is None else set(self.owned)
        stats.shard_events = 0
        i = 0
        with realtime_sending(paced) as policy:
            stats.scheduler = policy
            size = PACED_BLOCK if paced else BLOCK
            for start in range(0, n, size):
                if self.stop.is_set():
                    break
                block = self.model.block(start, min(n, start + size))
                prefixes = self.encoder.prefixes(block, time_base_ms)
                due_ns = (t0_ns + np.round(block.due_ms * 1_000_000)).astype(np.int64).tolist()
                key_idx = block.key_idx.tolist()
                keys = [self._key(k) for k in key_idx]
                parts = [k % parts_n for k in key_idx]
                handoff = stats.handoff_ms
                delay = stats.send_delay_ms
                for j in range(len(prefixes)):
                    if owned is not None and parts[j] not in owned:   # another shard's event: not sent here
                        i += 1
                        continue
                    due = due_ns[j]
                    now = clock()
                    if paced and now < due + held_ns:
                        self._wait_until(due + held_ns, stats, next_hb_ref := [next_hb], hb_every_ns, due // 1_000_000)
                        next_hb = next_hb_ref[0]
                        if self.stop.is_set():
                            break
                        now = clock()
                    sent = now // 1_000_000
                    try:
                        produce(topic, finish(prefixes[j], sent), keys[j], partition=parts[j], on_delivery=cb)
                    except BufferError:
                        self._produce(stats, finish(prefixes[j], sent), keys[j], parts[j], cb)
                    handoff[i] = sent
                    delay[i] = (now - due) / 1_000_000 if paced else 0.0
                    stats.shard_events += 1
                    i += 1
                    if (i & 63) == 0:
                        self._poll(stats)
                        if now >= next_hb:
                            self._heartbeats(stats, due // 1_000_000)
                            next_hb = now + hb_every_ns
                        if progress and time.monotonic() >= next_progress:
                            stats.sent = i
                            progress(stats)
                            next_progress = time.monotonic() + progress_every_s
                if self.stop.is_set():
                    break
        stats.sent = i
        stats.interrupted = self.stop.is_set() and i < n
        mine = stats.handoff_ms[:i] > 0 if owned is not None else slice(None)
        stats.shard_mask = mine if owned is not None else None
        if stats.shard_events:
            nz = stats.handoff_ms[:i][mine]
            stats.first_handoff_ms, stats.last_handoff_ms = int(nz[0]), int(nz.max())
            for sec, cnt in zip(*np.unique((nz - time_base_ms) // 1000, return_counts=True)):
                stats.sent_per_second[int(sec)] = int(cnt)
        # Every event's delivery report before load_done, so ground truth knows each one's offset (and which the
        # broker refused). What is still queued is a few linger intervals' worth, unless the broker is away.
        deadline = time.monotonic() + DELIVERY_WAIT_S
        while len(self.producer) and time.monotonic() < deadline:
            self._poll(stats, 0.005)
            now = clock()
            if now >= next_hb:
                self._heartbeats(stats, now // 1_000_000)
                next_hb = now + hb_every_ns
        stats.client_log = self.client_log.lines()
        self.load_done.set()
        # Heartbeats after the load, until the last window can have closed everywhere.
        while heartbeat_until_ms is not None and not self.stop.is_set() and clock() // 1_000_000 < heartbeat_until_ms:
            now = clock()
            if now >= next_hb:
                self._heartbeats(stats, now // 1_000_000)
                next_hb = now + hb_every_ns
            self._poll(stats, min(0.05, max(0.0, (next_hb - clock()) / 1e9)))
            if progress and time.monotonic() >= next_progress:
                progress(stats)
                next_progress = time.monotonic() + progress_every_s
        deadline = time.monotonic() + DELIVERY_WAIT_S
        while len(self.producer) and time.monotonic() < deadline:
            self._poll(stats, 0.1)
        stats.finished_ms = clock() // 1_000_000
        stats.client_log = self.client_log.lines()
        if progress:
            progress(stats)
        return stats

    def _wait_until(self, due_ns: int, stats: SendStats, next_hb: list[int], hb_every_ns: int,
                    schedule_clock_ms: int) -> None:
        """Serve delivery reports and heartbeats while ahead of schedule (serving them late would inflate
        the acknowledgement latencies that librdkafka reports at callback time)."""
        while not self.stop.is_set():
            now = time.time_ns()
            if now >= next_hb[0]:
                self._heartbeats(stats, schedule_clock_ms)
                next_hb[0] = now + hb_every_ns
            left = due_ns - now
            if left <= 0:
                return
            if left > 1_500_000:
                self._poll(stats, min(left - 1_000_000, next_hb[0] - now, 50_000_000) / 1e9)
            else:
                self._poll(stats)
                time.sleep(max(left, SLEEP_QUANTUM_NS) / 1e9)

    def warm_up(self, timeout: float = 30.0) -> None:
        """Fetch metadata and the idempotent producer's ID before the load's first instant, so the first
        events do not carry connection set-up in their acknowledgement latency."""
        self.producer.list_topics(self.topic, timeout=timeout)
        stats = SendStats(scheduled=0, time_base_ms=0, handoff_ms=np.zeros(0, dtype=np.int64),
                          send_delay_ms=np.zeros(0))
        self._stats = stats
        # A backlog's events lie in the past: a heartbeat at the wall clock ahead of them would carry every
        # partition's watermark past the whole load. Event time 0 moves no watermark.
        self._heartbeats(stats, 0 if self.s.load.mode == "backlog" else time.time_ns() // 1_000_000)
        if not self.cooperative:
            self.producer.flush(timeout)
            return
        deadline = time.monotonic() + timeout
        while len(self.producer) and time.monotonic() < deadline:
            self._poll(stats, 0.01)

"""Baseline pipeline: a plain Kafka consumer computing the scenario's windows in Python.

What it computes: per key and event-time window (tumbling, sliding or session), count, sum, min, max of
`value` and max(`sent_at`), emitted once when the watermark (min over partitions of the largest event time
seen, minus the watermark delay) passes the window end; events for windows already closed are dropped as late.
It is the floor: the machine's own produce -> consume -> PostgreSQL path with no engine in between.
Run as: python -m pipelines.baseline.job CONFIG.json (the harness does this).
"""

from __future__ import annotations

import heapq
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from harness.records import beyond_skew, is_heartbeat, parse
from harness.stack.probes import kafka_conf

NEG = -(2**62)


class Windows:
    """Open windows per key; fires those whose end the watermark has passed."""

    def __init__(self, window: dict[str, Any]) -> None:
        self.type = window["type"]
        self.size, self.slide, self.gap = window.get("size_ms"), window.get("slide_ms"), window.get("gap_ms")
        self.state: dict[tuple[str, int, int], list[int]] = {}
        self.sessions: dict[str, list[list[int]]] = {}  # key -> [[start, end, cnt, sum, min, max, last]]
        self.ends: list[tuple[int, str, int]] = []  # heap of (end, key, start) for tumbling/sliding

    def add(self, key: str, t: int, v: int, sent: int, watermark: int) -> bool:
        """Add an event; False when it is late (its window has closed)."""
        if self.type == "session":
            return self._add_session(key, t, v, sent, watermark)
        if self.type == "tumbling":
            starts = [t - t % self.size]
        else:
            last = t - t % self.slide
            starts = [last - j * self.slide for j in range(self.size // self.slide)]
        accepted = False
        for s in starts:
            e = s + self.size
            if e <= watermark:
                continue
            accepted = True
            acc = self.state.get((key, s, e))
            if acc is None:
                self.state[(key, s, e)] = [1, v, v, v, sent]
                heapq.heappush(self.ends, (e, key, s))
            else:
                acc[0] += 1
                acc[1] += v
                acc[2] = min(acc[2], v)
                acc[3] = max(acc[3], v)
                acc[4] = max(acc[4], sent)
        return accepted

    def _add_session(self, key: str, t: int, v: int, sent: int, watermark: int) -> bool:
        if t + self.gap <= watermark:
            return False
        new = [t, t + self.gap, 1, v, v, v, sent]
        keep = []
        for s in self.sessions.get(key, []):
            if s[0] < new[1] and new[0] < s[1]:  # overlapping [start, end) windows merge
                new = [min(s[0], new[0]), max(s[1], new[1]), s[2] + new[2], s[3] + new[3], min(s[4], new[4]),
                       max(s[5], new[5]), max(s[6], new[6])]
            else:
                keep.append(s)
        keep.append(new)
        self.sessions[key] = keep
        return True

    def fire(self, watermark: int) -> list[tuple]:
        out = []
        if self.type == "session":
            for key, ss in list(self.sessions.items()):
                still = []
                for s in ss:
                    if s[1] <= watermark:
                        out.append((key, s[0], s[1], s[2], s[3], s[4], s[5], s[6]))
                    else:
                        still.append(s)
                if still:
                    self.sessions[key] = still
                else:
                    del self.sessions[key]
            return out
        while self.ends and self.ends[0][0] <= watermark:
            e, key, s = heapq.heappop(self.ends)
            acc = self.state.pop((key, s, e))
            out.append((key, s, e, *acc))
        return out


def main(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    status_file = Path(cfg["status_file"])
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    parts = list(range(cfg["partitions"]))
    consumer = Consumer(kafka_conf(cfg["bootstrap"], **{
        "group.id": f"harness-{cfg['load_id']}", "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10}))
    consumer.assign(start_positions(consumer, cfg["topic"], parts, cfg.get("start_offsets", "earliest")))
    conn = psycopg.connect(cfg["dsn"])
    win = Windows(cfg["window"])
    wm_delay = cfg["watermark_delay_ms"]
    skew = cfg.get("max_clock_skew_ms")
    max_et = {p: NEG for p in parts}
    offsets = {p: 0 for p in parts}
    counters = {"records_in": 0, "malformed": 0, "late_dropped": 0, "heartbeats": 0, "emitted": 0, "db_retries": 0}
    ident = (cfg["load_id"], cfg["engine"], cfg["repeat"])
    next_status = 0.0
    while not stop["now"]:
        msgs = consumer.consume(num_messages=cfg.get("poll_batch", 2000), timeout=0.05)
        malformed_rows = []
        now_ms = int(time.time() * 1000)
        for m in msgs:
            if m.error():
                continue
            p = m.partition()
            offsets[p] = m.offset() + 1
            counters["records_in"] += 1
            e = parse(m.value())
            if e is not None and beyond_skew(e, now_ms, skew):
                e = None
            if e is None:
                counters["malformed"] += 1
                malformed_rows.append((*ident, p, m.offset(),
                                       (m.value() or b"").decode("utf-8", "replace").replace("\x00", "")))
                continue
            watermark = min(max_et.values()) - wm_delay
            if e.event_time > max_et[p]:
                max_et[p] = e.event_time
            if is_heartbeat(e):
                counters["heartbeats"] += 1
                continue
            if not win.add(e.key, e.event_time, e.value, e.sent_at or 0, watermark):
                counters["late_dropped"] += 1
        watermark = min(max_et.values()) - wm_delay
        fired = win.fire(watermark) if watermark > NEG // 2 else []
        if fired or malformed_rows:
            conn = write(conn, cfg["dsn"], ident, fired, malformed_rows, counters, stop)
            counters["emitted"] += len(fired)
        now = time.monotonic()
        if now >= next_status:
            _write_status(status_file, offsets, counters, watermark)
            next_status = now + 0.2
    _write_status(status_file, offsets, counters, min(max_et.values()) - wm_delay)
    consumer.close()
    conn.close()
    return 0


def write(conn: psycopg.Connection, dsn: str, ident: tuple, fired: list[tuple], malformed_rows: list[tuple],
          counters: dict[str, int], stop: dict[str, bool]) -> psycopg.Connection:
    """Insert the fired windows and malformed rows in one transaction. When the database goes away (a restart),
    reconnect with backoff and write the same rows again: the windows were taken from the state, so giving up
    would lose them. Returns the connection in use."""
    backoff = 0.1
    while True:
        try:
            with conn.cursor() as cur:
                if fired:
                    cur.executemany(
                        "INSERT INTO harness_results_log (load_id, engine, repeat, key, window_start, window_end, cnt,"
                        " sum, min, max, last_sent_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                        [(*ident, *row) for row in fired])
                if malformed_rows:
                    cur.executemany("INSERT INTO harness_malformed (load_id, engine, repeat, kafka_partition, "
                                    "kafka_offset, raw) VALUES (%s,%s,%s,%s,%s,%s)", malformed_rows)
            conn.commit()
            return conn
        except psycopg.OperationalError as exc:
            counters["db_retries"] = counters.get("db_retries", 0) + 1
            print(f"baseline: database write failed ({exc}); reconnecting in {backoff:.1f} s", file=sys.stderr, flush=True)
            try:
                conn.close()
            except psycopg.Error:
                pass
            while not stop["now"]:
                time.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                try:
                    conn = psycopg.connect(dsn, connect_timeout=2)
                    break
                except psycopg.OperationalError:
                    continue
            if stop["now"]:
                raise


def start_positions(consumer: Consumer, topic: str, parts: list[int], start: Any) -> list[TopicPartition]:
    """Where to read from: "earliest" (the first run), "latest", {"timestamp": epoch ms} or {"offsets": {partition:
    offset}} (a restart)."""
    if start == "earliest":
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts]
    if start == "latest":
        return [TopicPartition(topic, p, OFFSET_END) for p in parts]
    if isinstance(start, dict) and isinstance(start.get("timestamp"), int):
        found = consumer.offsets_for_times([TopicPartition(topic, p, start["timestamp"]) for p in parts], timeout=10)
        # a partition with no record at or after the timestamp gets -1: read from its end
        return [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
    if isinstance(start, dict) and isinstance(start.get("offsets"), dict):
        return [TopicPartition(topic, p, int(start["offsets"][str(p)])) for p in parts]
    raise ValueError(f"start_offsets: expected earliest, latest, {{'timestamp': ms}} or {{'offsets': {{...}}}}, "
                     f"got {start!r}")


def _write_status(path: Path, offsets: dict[int, int], counters: dict[str, int], watermark: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"running": True, "offsets": offsets, "watermark": watermark, **counters}))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""The batch pipeline: an interval-scheduled job (hourly by default) computing the scenario's windows with pandas.

What one run computes: it reads the records that arrived since the previous run (Kafka offsets it keeps in
PostgreSQL, not record timestamps, which are send times), parses each record itself by the README's rule
(malformed ones are written to harness_malformed, heartbeats skipped), merges them into the partial aggregates
of windows not yet final, and emits every window whose end plus the grace period has passed on the wall clock:
count, sum, min, max of `value` and max(`sent_at`). A late record for a window already emitted within the
look-back makes the run emit that window again with its recomputed value; beyond the look-back it is dropped.
Results, malformed rows, window state and offsets commit in one transaction, so a run killed at any point and
started again neither duplicates nor loses anything.

`python -m pipelines.batch.job schedule CONFIG.json` runs a run every `interval`, each in its own process
(`python -m pipelines.batch.job once CONFIG.json`), as cron would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from confluent_kafka import Consumer, TopicPartition

from harness import window_assignment as harness_windows
from harness.records import beyond_skew, is_heartbeat, parse
from harness.scenario import Window
from harness.stack.probes import kafka_conf

STATE_DDL = """
CREATE TABLE IF NOT EXISTS harness_batch_offsets (
    load_id text NOT NULL, kafka_partition integer NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (load_id, kafka_partition));
CREATE TABLE IF NOT EXISTS harness_batch_windows (
    load_id text NOT NULL, key text NOT NULL, window_start bigint NOT NULL, window_end bigint NOT NULL,
    cnt bigint NOT NULL, sum bigint NOT NULL, min bigint NOT NULL, max bigint NOT NULL, last_sent_at bigint,
    last_event_time bigint NOT NULL, emitted boolean NOT NULL DEFAULT false, dirty boolean NOT NULL DEFAULT true,
    PRIMARY KEY (load_id, key, window_start, window_end));
CREATE TABLE IF NOT EXISTS harness_batch_progress (
    load_id text PRIMARY KEY, emitted_until_ms bigint NOT NULL);
CREATE TABLE IF NOT EXISTS harness_batch_runs (
    load_id text NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    records bigint NOT NULL, malformed bigint NOT NULL, late_dropped bigint NOT NULL, emitted bigint NOT NULL);
"""
AGG = ["cnt", "sum", "min", "max", "last_sent_at", "last_event_time"]


def _read_new(cfg: dict[str, Any], start: dict[int, int]) -> tuple[list[tuple[int, int, bytes | None]], dict[int, int]]:
    """Every record from the stored offsets up to the end offsets seen when the run began."""
    c = Consumer(kafka_conf(cfg["bootstrap"], **{"group.id": f"harness-batch-{cfg['load_id']}",
                                                 "enable.auto.commit": False}))
    try:
        parts = range(cfg["partitions"])
        ends = {p: c.get_watermark_offsets(TopicPartition(cfg["topic"], p), timeout=10)[1] for p in parts}
        todo = {p: (start.get(p, 0), ends[p]) for p in parts if start.get(p, 0) < ends[p]}
        out: list[tuple[int, int, bytes | None]] = []
        if todo:
            c.assign([TopicPartition(cfg["topic"], p, a) for p, (a, _) in todo.items()])
            remaining = {p: b for p, (_, b) in todo.items()}
            while remaining:
                for m in c.consume(num_messages=5000, timeout=1.0):
                    if m.error() or m.partition() not in remaining:
                        continue
                    if m.offset() < remaining[m.partition()]:
                        out.append((m.partition(), m.offset(), m.value()))
                    if m.offset() + 1 >= remaining[m.partition()]:
                        del remaining[m.partition()]
        return out, {p: max(start.get(p, 0), ends[p]) for p in parts}
    finally:
        c.close()


def _sessions(state: pd.DataFrame, new: pd.DataFrame, gap: int) -> pd.DataFrame:
    """Merge new events into open sessions per key: a session is [first, last + gap)."""
    rows = []
    if not state.empty:
        rows.append(state.assign(first=state["window_start"], last=state["last_event_time"]))
    if not new.empty:
        rows.append(pd.DataFrame({"key": new["key"], "first": new["event_time"], "last": new["event_time"],
                                  "cnt": 1, "sum": new["value"], "min": new["value"], "max": new["value"],
                                  "last_sent_at": new["sent_at"], "emitted": False}))
    if not rows:
        return state
    d = pd.concat(rows, ignore_index=True).sort_values(["key", "first"], kind="stable").reset_index(drop=True)
    out = []
    for key, g in d.groupby("key", sort=False):
        cur = None
        for r in g.itertuples(index=False):
            if cur is not None and r.first < cur["last"] + gap:  # overlapping [t, t + gap) windows merge
                cur.update(last=max(cur["last"], r.last), cnt=cur["cnt"] + r.cnt, sum=cur["sum"] + r.sum,
                           min=min(cur["min"], r.min), max=max(cur["max"], r.max),
                           last_sent_at=max(cur["last_sent_at"], r.last_sent_at), emitted=cur["emitted"] and r.emitted)
            else:
                if cur is not None:
                    out.append(cur)
                cur = {"key": key, "first": r.first, "last": r.last, "cnt": r.cnt, "sum": r.sum, "min": r.min,
                       "max": r.max, "last_sent_at": r.last_sent_at, "emitted": r.emitted}
        out.append(cur)
    res = pd.DataFrame(out)
    return pd.DataFrame({"key": res["key"], "window_start": res["first"], "window_end": res["last"] + gap,
                         "cnt": res["cnt"], "sum": res["sum"], "min": res["min"], "max": res["max"],
                         "last_sent_at": res["last_sent_at"], "last_event_time": res["last"], "emitted": res["emitted"]})


def run_once(cfg: dict[str, Any]) -> dict[str, int]:
    started = time.time()
    now_ms = int(started * 1000)
    w = cfg["window"]
    load_id, window = cfg["load_id"], Window(type=w["type"], **{
        f: f"{w[f + '_ms']}ms" for f in ("size", "slide", "gap") if w.get(f + "_ms") is not None})
    grace, lookback = cfg["grace_ms"], cfg["lookback_ms"]
    with psycopg.connect(cfg["dsn"]) as conn:
        conn.execute(STATE_DDL)
        conn.commit()
        start = dict(conn.execute("SELECT kafka_partition, next_offset FROM harness_batch_offsets WHERE load_id = %s",
                                  (load_id,)).fetchall())
        records, next_offsets = _read_new(cfg, start)
        events, malformed = [], []
        for p, off, raw in records:
            e = parse(raw)
            if e is not None and beyond_skew(e, now_ms, cfg.get("max_clock_skew_ms")):
                e = None
            if e is None:
                malformed.append((load_id, "batch", cfg["repeat"], p, off, (raw or b"").decode("utf-8", "replace").replace("\x00", "")))
            elif not is_heartbeat(e):
                events.append((e.key, e.event_time, e.value, e.sent_at or 0))
        new = pd.DataFrame(events, columns=["key", "event_time", "value", "sent_at"])
        state = pd.DataFrame(conn.execute(
            "SELECT key, window_start, window_end, cnt, sum, min, max, last_sent_at, last_event_time, emitted "
            "FROM harness_batch_windows WHERE load_id = %s", (load_id,)).fetchall(),
            columns=["key", "window_start", "window_end", *AGG, "emitted"])
        late_dropped = 0
        row = conn.execute("SELECT emitted_until_ms FROM harness_batch_progress WHERE load_id = %s", (load_id,)).fetchone()
        # Every window whose end + grace is <= this was already computed: by an earlier run, or before the job
        # existed (a record for such a window is as late for this job as for any engine started with the load).
        emitted_until = row[0] if row else cfg["started_ms"]
        horizon = now_ms - lookback  # windows whose end + grace is before this can no longer be recomputed
        if window.type == "session":
            changed = _sessions(state, new, int(window.gap or 0))
        else:
            if not new.empty:
                assigned = harness_windows.assign(new, window)
                due_at = assigned["window_end"] + grace
                late = due_at <= emitted_until
                # Late for a window past the look-back: it cannot be recomputed, so it is dropped.
                dropped = late & (due_at <= horizon)
                late_dropped = int(dropped.sum())
                assigned = assigned[~dropped]
                agg = assigned.groupby(["key", "window_start", "window_end"]).agg(
                    cnt=("value", "size"), sum=("value", "sum"), min=("value", "min"), max=("value", "max"),
                    last_sent_at=("sent_at", "max"), last_event_time=("event_time", "max")).reset_index()
            else:
                agg = pd.DataFrame(columns=["key", "window_start", "window_end", *AGG])
            m = state.merge(agg, on=["key", "window_start", "window_end"], how="outer", suffixes=("", "_n"),
                            indicator=True)
            fill = {c: m[c].where(m["_merge"] != "right_only", m[f"{c}_n"]) for c in AGG}
            both = m["_merge"] == "both"
            fill["cnt"] = np.where(both, m["cnt"] + m["cnt_n"], fill["cnt"])
            fill["sum"] = np.where(both, m["sum"] + m["sum_n"], fill["sum"])
            for c, fn in (("min", np.minimum), ("max", np.maximum), ("last_sent_at", np.maximum),
                          ("last_event_time", np.maximum)):
                fill[c] = np.where(both, fn(m[c], m[f"{c}_n"]), fill[c])
            changed = pd.DataFrame({"key": m["key"], "window_start": m["window_start"], "window_end": m["window_end"],
                                    **fill, "emitted": m["emitted"].astype("boolean").fillna(False).astype(bool)})
            changed["touched"] = (m["_merge"] != "left_only").to_numpy()
        due = (changed["window_end"] + grace <= now_ms)
        touched = changed["touched"] if "touched" in changed else ~changed["emitted"]
        emit = changed[due & (~changed["emitted"] | touched)]
        with conn.cursor() as cur:
            if len(emit):
                cur.executemany(
                    "INSERT INTO harness_results_log (load_id, engine, repeat, key, window_start, window_end, cnt, sum,"
                    " min, max, last_sent_at) VALUES (%s,'batch',%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    [(load_id, cfg["repeat"], r.key, int(r.window_start), int(r.window_end), int(r.cnt), int(r.sum),
                      int(r.min), int(r.max), int(r.last_sent_at)) for r in emit.itertuples(index=False)])
            if malformed:
                cur.executemany("INSERT INTO harness_malformed (load_id, engine, repeat, kafka_partition, kafka_offset,"
                                " raw) VALUES (%s,%s,%s,%s,%s,%s)", malformed)
            changed = changed.assign(emitted=changed["emitted"] | due)
            keep = changed[~(changed["emitted"] & (changed["window_end"] + grace <= horizon))]
            cur.execute("INSERT INTO harness_batch_progress VALUES (%s, %s) ON CONFLICT (load_id) DO UPDATE "
                        "SET emitted_until_ms = EXCLUDED.emitted_until_ms", (load_id, now_ms))
            cur.execute("DELETE FROM harness_batch_windows WHERE load_id = %s", (load_id,))
            with cur.copy("COPY harness_batch_windows (load_id, key, window_start, window_end, cnt, sum, min, max, "
                          "last_sent_at, last_event_time, emitted, dirty) FROM STDIN") as copy:
                for r in keep.itertuples(index=False):
                    copy.write_row((load_id, r.key, int(r.window_start), int(r.window_end), int(r.cnt), int(r.sum),
                                    int(r.min), int(r.max), int(r.last_sent_at), int(r.last_event_time),
                                    bool(r.emitted), False))
            for p, off in next_offsets.items():
                cur.execute("INSERT INTO harness_batch_offsets VALUES (%s,%s,%s) ON CONFLICT (load_id, kafka_partition)"
                            " DO UPDATE SET next_offset = EXCLUDED.next_offset", (load_id, p, off))
            cur.execute("INSERT INTO harness_batch_runs (load_id, started_at, records, malformed, late_dropped, emitted)"
                        " VALUES (%s, to_timestamp(%s), %s, %s, %s, %s)",
                        (load_id, started, len(records), len(malformed), late_dropped, len(emit)))
            stall = float(os.environ.get("HARNESS_BATCH_STALL_BEFORE_COMMIT_S", "0"))
            if stall:  # fault-injection point: everything is written, nothing committed yet
                Path(cfg["status_file"]).with_name("stalled").write_text(str(os.getpid()))
                time.sleep(stall)
        conn.commit()
    return {"records": len(records), "malformed": len(malformed), "late_dropped": late_dropped,
            "emitted": int(len(emit)), "offsets": next_offsets}


def schedule(cfg: dict[str, Any], config_path: str) -> int:
    status = Path(cfg["status_file"])
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    totals = {"runs": 0, "failed_runs": 0, "records_in": 0, "malformed": 0, "late_dropped": 0, "emitted": 0}
    offsets: dict[str, int] = {}
    _write(status, {"running": True, "offsets": offsets, **totals})
    next_run = time.monotonic() + (0 if cfg.get("run_at_start") else cfg["interval_ms"] / 1000)
    while not stop["now"]:
        if time.monotonic() < next_run:
            time.sleep(min(0.1, next_run - time.monotonic()))
            continue
        next_run += cfg["interval_ms"] / 1000
        out = subprocess.run([sys.executable, "-m", "pipelines.batch.job", "once", config_path],
                             capture_output=True, text=True)
        totals["runs"] += 1
        if out.returncode != 0:
            totals["failed_runs"] += 1
            print(out.stderr, file=sys.stderr, flush=True)
        else:
            r = json.loads(out.stdout.strip().splitlines()[-1])
            totals["records_in"] += r["records"]
            for k in ("malformed", "late_dropped", "emitted"):
                totals[k] += r[k]
            offsets = r["offsets"]
        _write(status, {"running": True, "offsets": offsets, **totals})
    return 0


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def main(argv: list[str]) -> int:
    cmd, config_path = argv[1], argv[2]
    cfg = json.loads(Path(config_path).read_text())
    if cmd == "once":
        print(json.dumps(run_once(cfg)))
        return 0
    return schedule(cfg, config_path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

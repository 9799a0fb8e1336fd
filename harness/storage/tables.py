"""Ground-truth tables in PostgreSQL. Engines, reports and outside checkers read them (docs/tables.md)."""

from __future__ import annotations

import pandas as pd
import psycopg

from harness.groundtruth import GroundTruth

DDL = """
CREATE TABLE IF NOT EXISTS harness_loads (
    load_id        text PRIMARY KEY,
    run_id         text NOT NULL,
    engine         text,
    repeat         integer NOT NULL DEFAULT 0,
    scenario       text NOT NULL,
    topic          text NOT NULL,
    partitions     integer NOT NULL,
    seed           bigint NOT NULL,
    time_base_ms   bigint NOT NULL,
    events_sent    bigint,
    events_acked   bigint,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS harness_expected_windows (
    load_id        text NOT NULL,
    answer         text NOT NULL CHECK (answer IN ('complete', 'on_time')),
    key            text NOT NULL,
    window_start   bigint NOT NULL,
    window_end     bigint NOT NULL,
    cnt            bigint NOT NULL,
    sum            bigint NOT NULL,
    min            bigint NOT NULL,
    max            bigint NOT NULL,
    last_sent_at   bigint NOT NULL,
    PRIMARY KEY (load_id, answer, key, window_start, window_end)
);
CREATE TABLE IF NOT EXISTS harness_special_events (
    load_id        text NOT NULL,
    event_id       bigint NOT NULL,
    kind           text NOT NULL,
    key            text NOT NULL,
    event_time     bigint NOT NULL,
    sent_at        bigint NOT NULL,
    PRIMARY KEY (load_id, event_id)
);
"""


def ensure_schema(conn: psycopg.Connection) -> None:
    # Serialised so concurrent first runs on a fresh database do not race on CREATE TABLE.
    conn.execute("SELECT pg_advisory_xact_lock(727001)")
    conn.execute(DDL)


def record_load(conn: psycopg.Connection, *, load_id: str, run_id: str, engine: str | None, repeat: int,
                scenario: str, topic: str, partitions: int, seed: int, time_base_ms: int) -> None:
    conn.execute(
        "INSERT INTO harness_loads (load_id, run_id, engine, repeat, scenario, topic, partitions, seed, time_base_ms)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (load_id) DO NOTHING",
        (load_id, run_id, engine, repeat, scenario, topic, partitions, seed, time_base_ms))


def write_ground_truth(conn: psycopg.Connection, load_id: str, gt: GroundTruth, sent: int, acked: int) -> None:
    conn.execute("DELETE FROM harness_expected_windows WHERE load_id = %s", (load_id,))
    conn.execute("DELETE FROM harness_special_events WHERE load_id = %s", (load_id,))
    with conn.cursor() as cur:
        with cur.copy("COPY harness_expected_windows (load_id, answer, key, window_start, window_end, cnt, sum, "
                      "min, max, last_sent_at) FROM STDIN") as copy:
            for answer, frame in gt.windows.items():
                for row in frame.itertuples(index=False):
                    copy.write_row((load_id, answer, row.key, int(row.window_start), int(row.window_end), int(row.cnt),
                                    int(row.sum), int(row.min), int(row.max), int(row.last_sent_at)))
        with cur.copy("COPY harness_special_events (load_id, event_id, kind, key, event_time, sent_at) FROM STDIN") as copy:
            for row in gt.special.itertuples(index=False):
                copy.write_row((load_id, int(row.event_id), row.kind, row.key, int(row.event_time), int(row.sent_at)))
    conn.execute("UPDATE harness_loads SET events_sent = %s, events_acked = %s WHERE load_id = %s",
                 (sent, acked, load_id))


def read_expected(conn: psycopg.Connection, load_id: str, answer: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT key, window_start, window_end, cnt, sum, min, max, last_sent_at FROM harness_expected_windows "
        "WHERE load_id = %s AND answer = %s ORDER BY key, window_start, window_end", (load_id, answer)).fetchall()
    return pd.DataFrame(rows, columns=["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"])

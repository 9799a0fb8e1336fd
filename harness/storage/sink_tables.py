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

-- Every row an engine emits, with the database's own insert time. No unique constraint: it holds duplicates.
CREATE TABLE IF NOT EXISTS harness_results_log (
    load_id        text NOT NULL,
    engine         text NOT NULL,
    repeat         integer NOT NULL DEFAULT 0,
    key            text NOT NULL,
    window_start   bigint NOT NULL,
    window_end     bigint NOT NULL,
    cnt            bigint,
    sum            bigint,
    min            bigint,
    max            bigint,
    last_sent_at   bigint,
    inserted_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS harness_results_log_load ON harness_results_log (load_id);

-- The final answer per window, upserted (ON CONFLICT) from each log row in the same transaction.
CREATE TABLE IF NOT EXISTS harness_results_final (
    load_id        text NOT NULL,
    engine         text NOT NULL,
    repeat         integer NOT NULL DEFAULT 0,
    key            text NOT NULL,
    window_start   bigint NOT NULL,
    window_end     bigint NOT NULL,
    cnt            bigint,
    sum            bigint,
    min            bigint,
    max            bigint,
    last_sent_at   bigint,
    emissions      integer NOT NULL,
    first_inserted_at timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    changed_xid    xid8,
    PRIMARY KEY (load_id, key, window_start, window_end)
);

-- Databases from before changed_xid upgrade here. Checked first, because ALTER TABLE takes an ACCESS EXCLUSIVE
-- lock even when IF NOT EXISTS makes it a no-op, and would queue behind (and block) every reader and writer.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'harness_results_final'::regclass
                   AND attname = 'changed_xid' AND NOT attisdropped) THEN
        ALTER TABLE harness_results_final ADD COLUMN IF NOT EXISTS changed_xid xid8;
    END IF;
    IF to_regclass('harness_results_final_changed') IS NULL THEN
        CREATE INDEX IF NOT EXISTS harness_results_final_changed ON harness_results_final (load_id, changed_xid);
    END IF;
END $$;

-- Stamped on the final table itself rather than in harness_upsert_final(), so that any write path (and an
-- older harness that re-creates harness_upsert_final() without it) still stamps: a write that missed the stamp
-- would be invisible to the incremental completion check (harness/storage/completion.py).
CREATE OR REPLACE FUNCTION harness_stamp_final_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER harness_results_final_stamp BEFORE INSERT OR UPDATE ON harness_results_final
    FOR EACH ROW EXECUTE FUNCTION harness_stamp_final_change();

-- Malformed records, one row each, written by the engine that met them.
CREATE TABLE IF NOT EXISTS harness_malformed (
    load_id        text NOT NULL,
    engine         text NOT NULL,
    repeat         integer NOT NULL DEFAULT 0,
    kafka_partition integer,
    kafka_offset   bigint,
    raw            text,
    inserted_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS harness_malformed_load ON harness_malformed (load_id);

CREATE OR REPLACE FUNCTION harness_upsert_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO harness_results_final AS f (load_id, engine, repeat, key, window_start, window_end, cnt, sum, min,
                                            max, last_sent_at, emissions, first_inserted_at, updated_at)
    VALUES (NEW.load_id, NEW.engine, NEW.repeat, NEW.key, NEW.window_start, NEW.window_end, NEW.cnt, NEW.sum,
            NEW.min, NEW.max, NEW.last_sent_at, 1, NEW.inserted_at, NEW.inserted_at)
    ON CONFLICT (load_id, key, window_start, window_end) DO UPDATE
        SET cnt = EXCLUDED.cnt, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
            last_sent_at = EXCLUDED.last_sent_at, emissions = f.emissions + 1, updated_at = EXCLUDED.updated_at;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER harness_results_log_upsert AFTER INSERT ON harness_results_log
    FOR EACH ROW EXECUTE FUNCTION harness_upsert_final();
"""

LOG_COLUMNS = ["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at", "inserted_at_ms",
               "committed_at_ms"]


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
    # Autovacuum analyses only after a delay; until then the full joins over these tables (count_final_matching,
    # read_final) were planned from stale statistics, once running 510 s at 110 k windows.
    conn.execute("ANALYZE harness_expected_windows")
    conn.execute("ANALYZE harness_results_final")
    conn.execute("UPDATE harness_loads SET events_sent = %s, events_acked = %s WHERE load_id = %s",
                 (sent, acked, load_id))


def read_expected(conn: psycopg.Connection, load_id: str, answer: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT key, window_start, window_end, cnt, sum, min, max, last_sent_at FROM harness_expected_windows "
        "WHERE load_id = %s AND answer = %s ORDER BY key, window_start, window_end", (load_id, answer)).fetchall()
    return pd.DataFrame(rows, columns=["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"])


def commit_times_available(conn: psycopg.Connection) -> bool:
    """Whether the server records commit times (track_commit_timestamp, settable only at server start)."""
    row = conn.execute("SHOW track_commit_timestamp").fetchone()
    return row is not None and str(row[0]).lower() == "on"


def read_log(conn: psycopg.Connection, load_id: str) -> pd.DataFrame:
    """Every emission of a load, oldest first, with the insert time and the commit time (when readers could
    first see the row) in epoch ms. committed_at_ms is NaN where the server does not track commit times, and
    for rows committed before it started to."""
    # pg_xact_commit_timestamp() raises when tracking is off, so it is only called when it is on.
    committed = ("(extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000)::float8"
                 if commit_times_available(conn) else "NULL::float8")
    rows = conn.execute(
        "SELECT key, window_start, window_end, cnt, sum, min, max, last_sent_at, "
        f"(extract(epoch FROM inserted_at) * 1000)::float8, {committed} FROM harness_results_log "
        "WHERE load_id = %s ORDER BY inserted_at", (load_id,)).fetchall()
    log = pd.DataFrame(rows, columns=LOG_COLUMNS)
    log["committed_at_ms"] = log["committed_at_ms"].astype("float64")  # all-NULL would be an object column
    return log


def read_final(conn: psycopg.Connection, load_id: str) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT key, window_start, window_end, cnt, sum, min, max, last_sent_at, emissions FROM harness_results_final "
        "WHERE load_id = %s", (load_id,)).fetchall()
    return pd.DataFrame(rows, columns=["key", "window_start", "window_end", "cnt", "sum", "min", "max",
                                       "last_sent_at", "emissions"])


def count_final_matching(conn: psycopg.Connection, load_id: str, answer: str) -> tuple[int, int]:
    """(windows of the answer whose final row equals it, windows in the answer), by a full join: the reference
    for the runner's incremental check (completion.CompletionCheck), which replaced it in the wait loop."""
    row = conn.execute(
        "SELECT count(f.key), count(*) FROM harness_expected_windows e LEFT JOIN harness_results_final f "
        "ON f.load_id = e.load_id AND f.key = e.key AND f.window_start = e.window_start AND f.window_end = e.window_end "
        "AND f.cnt = e.cnt AND f.sum = e.sum AND f.min = e.min AND f.max = e.max "
        "WHERE e.load_id = %s AND e.answer = %s", (load_id, answer)).fetchone()
    return int(row[0]), int(row[1])  # type: ignore[index]


def count_malformed(conn: psycopg.Connection, load_id: str) -> tuple[int, int]:
    """(distinct (partition, offset) pairs, rows): a replay writes a malformed record's row again, and it is
    still one record."""
    row = conn.execute("SELECT count(DISTINCT (kafka_partition, kafka_offset)), count(*) FROM harness_malformed "
                       "WHERE load_id = %s", (load_id,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def malformed_pairs(conn: psycopg.Connection, load_id: str) -> set[tuple[int, int]]:
    """The distinct (partition, offset) pairs an engine wrote to harness_malformed for a load."""
    return {(int(p), int(o)) for p, o in conn.execute(
        "SELECT DISTINCT kafka_partition, kafka_offset FROM harness_malformed WHERE load_id = %s", (load_id,))}


def read_malformed(conn: psycopg.Connection, load_id: str) -> pd.DataFrame:
    """Every row an engine wrote to harness_malformed for a load, oldest first, with its insert time in epoch ms."""
    rows = conn.execute(
        "SELECT kafka_partition, kafka_offset, (extract(epoch FROM inserted_at) * 1000)::float8 "
        "FROM harness_malformed WHERE load_id = %s ORDER BY inserted_at", (load_id,)).fetchall()
    return pd.DataFrame(rows, columns=["kafka_partition", "kafka_offset", "inserted_at_ms"])


def log_rows_since(conn: psycopg.Connection, load_id: str) -> int:
    return int(conn.execute("SELECT count(*) FROM harness_results_log WHERE load_id = %s", (load_id,)).fetchone()[0])  # type: ignore[index]

"""The incremental completion check against the full join, on the real PostgreSQL of the session stack; and
commit times in the sink log."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest

from conftest import Svc
from harness.groundtruth import GroundTruth
from harness.storage import sink_tables
from harness.storage.completion import CompletionCheck

pytestmark = pytest.mark.stack

N = 30
Row = tuple[str, int, int, int, int, int, int]  # key, window_start, window_end, cnt, sum, min, max


@pytest.fixture
def conn(svc: Svc) -> Iterator[psycopg.Connection]:
    with psycopg.connect(svc.dsn, autocommit=True) as c:
        sink_tables.ensure_schema(c)
        yield c


@pytest.fixture
def load_id(conn: psycopg.Connection) -> Iterator[str]:
    lid = f"test-completion-{uuid.uuid4().hex[:12]}"
    yield lid
    for table in ("harness_results_log", "harness_results_final", "harness_expected_windows"):
        conn.execute(f"DELETE FROM {table} WHERE load_id LIKE %s", (lid + "%",))


def promised() -> pd.DataFrame:
    rows = [(f"k{i % 4}", 1000 * (i // 4), 1000 * (i // 4) + 1000, i + 1, 10 * i, i, 2 * i) for i in range(N)]
    frame = pd.DataFrame(rows, columns=["key", "window_start", "window_end", "cnt", "sum", "min", "max"])
    return frame.assign(last_sent_at=frame["window_end"])


def right(i: int) -> Row:
    return (f"k{i % 4}", 1000 * (i // 4), 1000 * (i // 4) + 1000, i + 1, 10 * i, i, 2 * i)


def wrong(i: int) -> Row:
    k, ws, we, c, s, lo, hi = right(i)
    return (k, ws, we, c, s + 1, lo, hi)


def emit(c: psycopg.Connection, load_id: str, rows: list[Row]) -> None:
    with c.cursor() as cur:
        cur.executemany("INSERT INTO harness_results_log (load_id, engine, key, window_start, window_end, cnt, sum, "
                        "min, max) VALUES (%s, 'test', %s, %s, %s, %s, %s, %s, %s)", [(load_id, *r) for r in rows])


def test_incremental_check_equals_full_join(svc: Svc, conn: psycopg.Connection, load_id: str) -> None:
    expected = promised()
    special = pd.DataFrame({c: pd.Series(dtype="int64") for c in ("event_id", "kind", "key", "event_time", "sent_at")})
    with psycopg.connect(svc.dsn) as tx:
        sink_tables.write_ground_truth(tx, load_id, GroundTruth({"complete": expected}, special, {}), 0, 0)
    history = f"{load_id}-history"  # an older load's rows, all right for this load's windows: must not count
    emit(conn, history, [right(i) for i in range(N)])
    check_conn = psycopg.connect(svc.dsn, autocommit=True)
    check = CompletionCheck(check_conn, load_id, expected)

    def agree(want: int | None = None) -> None:
        got = check.check()
        assert got == sink_tables.count_final_matching(conn, load_id, "complete")
        if want is not None:
            assert got == (want, N)

    # Begun before the first check, with its id taken: committed after that check.
    early = psycopg.connect(svc.dsn)
    emit(early, load_id, [right(29)])
    agree(0)
    emit(conn, load_id, [right(i) for i in range(10)])
    early.commit()
    agree(11)
    emit(conn, load_id, [right(i) for i in range(5)])                    # re-emitted, same value
    agree(11)
    emit(conn, load_id, [wrong(i) for i in range(10, 15)])               # new windows, wrong at first
    agree(11)
    emit(conn, load_id, [right(i) for i in range(10, 15)] + [wrong(0)])  # fixed; a right one turns wrong
    agree(15)
    emit(conn, load_id, [right(0), ("k9", 0, 1000, 1, 1, 1, 1)])         # back to right; a window not promised
    agree(16)

    # Left open across checks while later transactions commit (a late commit: its rows keep their old
    # inserted_at); a check that followed only the newest ids seen would skip it.
    late = psycopg.connect(svc.dsn)
    emit(late, load_id, [right(i) for i in range(15, 20)] + [wrong(1)])
    # Begun (a snapshot, no id yet) before a check, writing only after it.
    idle = psycopg.connect(svc.dsn)
    idle.execute("SELECT 1")
    agree(16)
    emit(conn, load_id, [right(20), right(21)])
    agree(18)
    emit(idle, load_id, [right(22)])
    agree(18)
    idle.commit()
    agree(19)
    emit(conn, load_id, [right(23)])
    agree(20)
    late.commit()
    agree(24)  # +5 late, -1 for window 1 turned wrong

    aborted = psycopg.connect(svc.dsn)
    emit(aborted, load_id, [right(24), right(25), wrong(2)])
    agree(24)
    aborted.rollback()
    agree(24)

    with psycopg.connect(svc.dsn) as sub:  # savepoints: one rolled back, one kept; the transaction commits
        with sub.transaction():
            emit(sub, load_id, [right(24), wrong(3)])
            with pytest.raises(psycopg.errors.DivisionByZero), sub.transaction():
                emit(sub, load_id, [wrong(24), right(25)])
                sub.execute("SELECT 1 / 0")
            with sub.transaction():
                emit(sub, load_id, [right(26), right(1)])
    agree(26)  # +24, +26, +1 back to right, -3

    emit(conn, history, [wrong(i) for i in range(N)])
    agree(26)
    agree(26)  # nothing changed: the same answer again
    emit(conn, load_id, [right(i) for i in range(N)])
    agree(N)
    for c in (check_conn, early, late, idle, aborted):
        c.close()


def test_upgrades_a_final_table_without_changed_xid(conn: psycopg.Connection, load_id: str) -> None:
    schema = f"upgrade_{uuid.uuid4().hex[:8]}"
    ddl = re.search(r"CREATE TABLE IF NOT EXISTS harness_results_final \(.*?\n\);", sink_tables.DDL, re.S)
    assert ddl is not None
    old = ddl.group(0).replace("    changed_xid    xid8,\n", "")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(old)
        conn.execute("INSERT INTO harness_results_final (load_id, engine, key, window_start, window_end, emissions, "
                     "first_inserted_at, updated_at) VALUES ('before', 'test', 'k', 0, 1, 1, now(), now())")
        sink_tables.ensure_schema(conn)
        emit(conn, load_id, [right(0)])
        rows = conn.execute("SELECT load_id, changed_xid IS NOT NULL FROM harness_results_final ORDER BY 1").fetchall()
        assert rows == [("before", False), (load_id, True)]
        assert conn.execute("SELECT to_regclass('harness_results_final_changed') IS NOT NULL").fetchone() == (True,)
        sink_tables.ensure_schema(conn)  # again: a no-op
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.execute("RESET search_path")


def test_commit_time_of_a_row_is_when_its_transaction_committed(svc: Svc, conn: psycopg.Connection,
                                                                  load_id: str) -> None:
    assert sink_tables.commit_times_available(conn)
    with psycopg.connect(svc.dsn) as tx:
        emit(tx, load_id, [right(0)])
        tx.execute("SELECT pg_sleep(0.3)")
    log = sink_tables.read_log(conn, load_id)
    assert list(log.columns) == sink_tables.LOG_COLUMNS and list(log.columns[-2:]) == ["inserted_at_ms",
                                                                                       "committed_at_ms"]
    lag = float(log["committed_at_ms"].iloc[0] - log["inserted_at_ms"].iloc[0])
    assert 295 <= lag < 1500


def test_read_log_without_commit_times(conn: psycopg.Connection, load_id: str, monkeypatch: Any) -> None:
    # A server without track_commit_timestamp cannot be had without a restart; this takes the same branch.
    emit(conn, load_id, [right(0), right(1)])
    monkeypatch.setattr(sink_tables, "commit_times_available", lambda _conn: False)
    log = sink_tables.read_log(conn, load_id)
    assert len(log) == 2 and log["committed_at_ms"].isna().all() and log["committed_at_ms"].dtype == "float64"
    assert log["inserted_at_ms"].notna().all()

"""The runner's completion check, incremental: each call reads only the final rows changed since the last call.

Why it never misses a row: every write to harness_results_final stamps `changed_xid` with the writing
transaction's (top-level) id. A row version that the previous check's snapshot did not see was written by a
transaction that was still running, or had no id yet, when that snapshot was taken; its id is therefore at
least that snapshot's xmin (the oldest id still running then). So reading `changed_xid >= previous xmin`, in a
new snapshot, finds every row version that appeared since. A version whose transaction has not committed by
the new snapshot is invisible now and will be re-read by a later check (its id stays >= every later xmin until
it ends), and re-reading a row is harmless: a window counts as matched iff its latest seen value equals the
promise. Row versions older than the previous xmin were visible to the previous check already.

The cost is the rows changed since the oldest transaction that was running at the previous check, within this
load, found through the index (load_id, changed_xid): it does not grow with other loads' history. A
transaction left open (an engine's, or any session's that holds an xid) keeps the horizon back and so makes
each check re-read this load's rows changed since it began, never more than the load's rows.

Final rows are never deleted while a load runs (the trigger only upserts); a deletion would go unseen.
"""

from __future__ import annotations

import pandas as pd
import psycopg
from psycopg.pq import TransactionStatus

Window = tuple[str, int, int]    # key, window_start, window_end
Value = tuple[int, int, int, int]  # cnt, sum, min, max


def promised_windows(expected: pd.DataFrame) -> dict[Window, Value]:
    """The frame's windows (columns key, window_start, window_end, cnt, sum, min, max) as a dict of plain ints,
    so they compare equal to what the database returns."""
    cols = [expected[c].tolist() for c in ("key", "window_start", "window_end", "cnt", "sum", "min", "max")]
    return {(str(k), int(ws), int(we)): (int(c), int(s), int(lo), int(hi))
            for k, ws, we, c, s, lo, hi in zip(*cols)}


class CompletionCheck:
    """(promised windows whose final row holds the promised value, promised windows), like
    sink_tables.count_final_matching, from the rows changed since the previous call.

    The connection must be idle (no transaction open) at each call; each call opens and ends its own.
    """

    def __init__(self, conn: psycopg.Connection, load_id: str, expected: pd.DataFrame) -> None:
        self.conn, self.load_id = conn, load_id
        self.expected = promised_windows(expected)
        # Whether a window matches depends only on its latest value, so the windows matching now are all the
        # state needed to apply a changed row idempotently.
        self.matched: set[Window] = set()
        self.horizon = 0          # xmin of the previous check's snapshot; 0 reads the load's every row
        self.rows_read = 0        # rows the last call read, for benchmarks

    def check(self) -> tuple[int, int]:
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            raise RuntimeError("CompletionCheck needs an idle connection: its snapshot must start with the check")
        with self.conn.transaction():
            # Both reads below in one snapshot: the horizon must be the xmin of the snapshot the rows came from.
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = self.conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
            assert row is not None
            rows = self.conn.execute(
                "SELECT key, window_start, window_end, cnt, sum, min, max FROM harness_results_final "
                "WHERE load_id = %s AND changed_xid >= %s::xid8", (self.load_id, str(self.horizon))).fetchall()
        self.horizon = int(row[0])
        self.rows_read = len(rows)
        for key, ws, we, cnt, total, lo, hi in rows:
            window = (key, ws, we)
            want = self.expected.get(window)
            if want is None:
                continue  # an extra window: not promised, never counted
            if (cnt, total, lo, hi) == want:
                self.matched.add(window)
            else:
                self.matched.discard(window)
        return len(self.matched), len(self.expected)

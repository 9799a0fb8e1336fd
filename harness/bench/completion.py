"""`harness bench completion`: the incremental completion check (storage/completion.py) while a simulated engine
writes a load's final values, against the full join it replaced (sink_tables.count_final_matching).

The simulated engine writes through harness_results_log (so the trigger upserts the final table, as for a real
engine) from two connections, a transaction per batch, in random order: every promised window's value, some
windows first with a wrong value, some re-emitted, and a few windows that were not promised. Optional history
(other loads' rows) shows whether the check's cost depends on what the database keeps across runs.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import psutil
import psycopg

from harness.groundtruth import GroundTruth
from harness.metrics.stats import percentiles
from harness.stack.embedded import EmbeddedStack
from harness.stack.services import ENV_DSN, choose
from harness.storage import sink_tables
from harness.storage.completion import CompletionCheck

KEYS = 1000
WINDOW_MS = 1000
WRITERS = 2
BATCH_S = 0.1          # each writer commits a batch this often
WRONG_FIRST = 0.10     # windows first emitted with a wrong value
REEMITTED = 0.20       # windows emitted once more with their right value
EXTRA = 0.02           # windows emitted that were not promised
EXPECTED_COLUMNS = ["key", "window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at"]
LOG_COPY = "COPY harness_results_log (load_id, engine, repeat, key, window_start, window_end, cnt, sum, min, max, " \
           "last_sent_at) FROM STDIN"


@contextmanager
def postgres(dsn: str | None, say: Callable[[str], None]) -> Iterator[str]:
    """The given database, else the embedded stack's PostgreSQL, started (alone: Kafka is not needed) and
    stopped again when it was not running."""
    ext = choose(dsn, ENV_DSN, None)
    if ext:
        yield ext
        return
    stack = EmbeddedStack()
    started = not stack.postgres_running()
    if started:
        say("embedded PostgreSQL not running: starting it for this command")
        stack.up(kafka=False, postgres=True, progress=say)
    try:
        yield str(stack.dsn)
    finally:
        if started:
            say("stopping the PostgreSQL this command started")
            stack.down(only=["postgres"])


def synthetic_windows(n: int, base_ms: int, rng: np.random.Generator) -> pd.DataFrame:
    i = np.arange(n)
    ws = base_ms + (i // KEYS) * WINDOW_MS
    cnt = rng.integers(1, 50, n)
    lo = rng.integers(0, 1000, n)
    return pd.DataFrame({"key": [f"k{k:04d}" for k in i % KEYS], "window_start": ws, "window_end": ws + WINDOW_MS,
                         "cnt": cnt, "sum": cnt * (lo + 500), "min": lo, "max": lo + 1000, "last_sent_at": ws + WINDOW_MS})


def emissions(expected: pd.DataFrame, seconds: float, rng: np.random.Generator) -> list[tuple[float, tuple[object, ...]]]:
    """(offset s, log row) per emission. A window's wrong value comes before its right ones, so the final table
    ends equal to the promise."""
    n = len(expected)
    rows = list(zip(*(expected[c].tolist() for c in EXPECTED_COLUMNS)))
    right_at = rng.uniform(0.2, 1.0, n) * seconds
    out: list[tuple[float, tuple[object, ...]]] = [(float(t), r) for t, r in zip(right_at, rows)]
    for j in np.flatnonzero(rng.random(n) < WRONG_FIRST):
        k, ws, we, c, s, lo, hi, last = rows[j]
        out.append((float(right_at[j]) * rng.uniform(0, 1), (k, ws, we, c + 1, s + 7, lo, hi, last)))
    for j in np.flatnonzero(rng.random(n) < REEMITTED):
        out.append((float(right_at[j] + rng.uniform(0, seconds - right_at[j])), rows[j]))
    last_ws = int(expected["window_start"].max()) if n else 0
    for x in range(int(n * EXTRA)):
        ws = last_ws + (1 + x // KEYS) * WINDOW_MS
        out.append((float(rng.uniform(0, seconds)), (f"k{x % KEYS:04d}", ws, ws + WINDOW_MS, 1, 1, 1, 1, ws)))
    return sorted(out, key=lambda e: e[0])


def write_truth(conn: psycopg.Connection, load_id: str, expected: pd.DataFrame) -> None:
    empty = pd.DataFrame({c: pd.Series(dtype="int64") for c in ("event_id", "event_time", "sent_at")})
    gt = GroundTruth(windows={"complete": expected}, special=empty.assign(kind="", key=""), counts={})
    sink_tables.write_ground_truth(conn, load_id, gt, 0, 0)


def write_history(conn: psycopg.Connection, load_id: str, n: int, rng: np.random.Generator) -> None:
    """n windows of an older load, expected and final, written straight to the tables (fast, and the final
    table's own trigger still stamps them)."""
    frame = synthetic_windows(n, 0, rng)
    with conn.cursor() as cur:
        with cur.copy("COPY harness_expected_windows (load_id, answer, key, window_start, window_end, cnt, sum, min, "
                      "max, last_sent_at) FROM STDIN") as copy:
            for r in frame.itertuples(index=False):
                copy.write_row((load_id, "complete", r.key, *(int(v) for v in r[1:])))
        with cur.copy("COPY harness_results_final (load_id, engine, key, window_start, window_end, cnt, sum, min, "
                      "max, last_sent_at, emissions, first_inserted_at, updated_at) FROM STDIN") as copy:
            for r in frame.itertuples(index=False):
                copy.write_row((load_id, "bench", r.key, *(int(v) for v in r[1:]), 1, "now", "now"))
    conn.execute("ANALYZE harness_expected_windows")
    conn.execute("ANALYZE harness_results_final")


def cleanup(conn: psycopg.Connection, load_ids: list[str]) -> None:
    for table in ("harness_results_log", "harness_results_final", "harness_expected_windows", "harness_special_events"):
        conn.execute(f"DELETE FROM {table} WHERE load_id = ANY(%s)", (load_ids,))


class Writer(threading.Thread):
    """One engine sink connection: its share of the emissions, a transaction (one COPY) per batch, each batch
    sent when its time comes."""

    def __init__(self, dsn: str, load_id: str, batches: list[tuple[float, bytes]], t0: float) -> None:
        super().__init__(daemon=True)
        self.dsn, self.load_id, self.batches, self.t0 = dsn, load_id, batches, t0
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                for due, payload in self.batches:
                    time.sleep(max(0.0, self.t0 + due - time.monotonic()))
                    with conn.transaction(), conn.cursor() as cur, cur.copy(LOG_COPY) as copy:
                        copy.write(payload)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def batches(load_id: str, plan: list[tuple[float, tuple[object, ...]]], seconds: float, writer: int) -> list[tuple[float, bytes]]:
    """This writer's batches as COPY text, built before the clock starts so the thread only sends."""
    out: dict[int, list[str]] = {}
    for t, r in plan:
        # By key, as an engine's parallel sinks are: a window's emissions stay in order on one connection.
        if int(str(r[0])[1:]) % WRITERS == writer:
            line = "\t".join([load_id, "bench", "0", *(str(v) for v in r)])
            out.setdefault(int(t / BATCH_S), []).append(line)
    return [(b * BATCH_S, ("\n".join(lines) + "\n").encode()) for b, lines in sorted(out.items())]


def backend(conn: psycopg.Connection) -> tuple[int, str | None]:
    """The connection's backend pid, and the server's data directory where this role may read it."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    try:
        d = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error:  # not a superuser nor pg_read_all_settings: the CPU figures stay empty
        d = None
    return int(row[0]), (str(d[0]) if d else None)


class PgCpu:
    """CPU seconds of the PostgreSQL server's processes (postmaster and children) and of one backend, on this
    machine. Sampled at every check, so processes that exit in between (autovacuum workers) count up to their
    last sample."""

    def __init__(self, backend_pid: int, data_directory: str | None) -> None:
        self.backend = self._local(backend_pid, data_directory)
        self.postmaster = self.backend.parent() if self.backend else None
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.backend_start = self._cpu(self.backend) if self.backend else 0.0

    @staticmethod
    def _local(pid: int, data_directory: str | None) -> psutil.Process | None:
        # A PostgreSQL backend's working directory is its data directory: tells this server's backend from a
        # process with the same id on this machine when the database is elsewhere.
        try:
            p = psutil.Process(pid)
            same = data_directory is not None and os.path.realpath(p.cwd()) == os.path.realpath(data_directory)
            return p if same else None
        except (psutil.Error, OSError):
            return None

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    def sample(self, first: bool = False) -> None:
        if self.postmaster is None:
            return
        for p in [self.postmaster, *self.postmaster.children(recursive=True)]:
            try:
                cpu = self._cpu(p)
            except psutil.Error:
                continue
            self.last[p.pid] = cpu
            if first:
                self.start[p.pid] = cpu

    def figures(self) -> dict[str, float | None]:
        if self.backend is None or self.postmaster is None:
            return {"checker_backend_cpu_s": None, "postgres_cpu_s": None, "checker_share": None}
        mine = self._cpu(self.backend) - self.backend_start
        total = sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())
        return {"checker_backend_cpu_s": round(mine, 3), "postgres_cpu_s": round(total, 3),
                "checker_share": round(mine / total, 4) if total > 0 else None}


@dataclass
class Timed:
    seconds: float
    result: tuple[int, int]


def timed(fn: Callable[[], tuple[int, int]]) -> Timed:
    t = time.perf_counter()
    r = fn()
    return Timed(time.perf_counter() - t, r)


def run(dsn: str, *, windows: int, interval: float, seconds: float, history: int, seed: int,
        say: Callable[[str], None]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    load_id = f"bench-completion-{time.time_ns()}"
    history_id = f"{load_id}-history"
    base_ms = (time.time_ns() // 1_000_000 // WINDOW_MS) * WINDOW_MS
    expected = synthetic_windows(windows, base_ms, rng)
    plan = emissions(expected, seconds, rng)
    with psycopg.connect(dsn, autocommit=True) as admin, psycopg.connect(dsn, autocommit=True) as conn:
        sink_tables.ensure_schema(admin)
        try:
            if history:
                say(f"history: {history} windows of another load")
                write_history(admin, history_id, history, rng)
            say(f"ground truth: {windows} windows under {load_id}")
            with psycopg.connect(dsn) as tx:
                write_truth(tx, load_id, expected)
            full_start = timed(lambda: sink_tables.count_final_matching(admin, load_id, "complete"))
            say(f"simulated engine: {len(plan)} log rows over {seconds:g} s from {WRITERS} connections; "
                f"checking every {interval:g} s")
            check = CompletionCheck(conn, load_id, expected)
            cpu = PgCpu(*backend(conn))
            t0 = time.monotonic() + 0.2
            writers = [Writer(dsn, load_id, batches(load_id, plan, seconds, w), t0) for w in range(WRITERS)]
            cpu.sample(first=True)
            for w in writers:
                w.start()
            calls: list[float] = []
            reread: list[int] = []
            result = (0, windows)
            while True:
                done = not any(w.is_alive() for w in writers)  # read before the check: the last check follows the last commit
                c = timed(check.check)
                calls.append(c.seconds)
                reread.append(check.rows_read)
                result = c.result
                cpu.sample()
                if done:
                    break
                time.sleep(max(0.0, interval - c.seconds))
            span = time.monotonic() - t0
            cpu_figures = cpu.figures()
            for w in writers:
                if w.error is not None:
                    raise w.error
            full_end = timed(lambda: sink_tables.count_final_matching(admin, load_id, "complete"))
            cold = timed(CompletionCheck(conn, load_id, expected).check)
        finally:
            cleanup(admin, [load_id, history_id])
    ms = np.asarray(calls) * 1000
    return {
        "windows": windows, "log_rows": len(plan), "history_windows": history, "writers": WRITERS,
        "write_seconds": seconds, "interval_s": interval, "span_s": round(span, 3),
        "incremental_calls": len(calls), "incremental_ms": percentiles(ms),
        "rows_read_per_call": percentiles(np.asarray(reread, dtype=float)),
        "first_check_of_whole_load_ms": round(cold.seconds * 1000, 3),
        "full_join_ms": {"start": round(full_start.seconds * 1000, 3), "end": round(full_end.seconds * 1000, 3)},
        "incremental_result": list(result), "full_join_result": list(full_end.result),
        "equal": result == full_end.result == cold.result, **cpu_figures,
    }


def summary_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows for the printed table."""
    inc, rows, full, share = res["incremental_ms"], res["rows_read_per_call"], res["full_join_ms"], res["checker_share"]
    return [
        ("incremental calls", str(res["incremental_calls"])),
        ("incremental ms p50 / p99 / max", f"{inc.get('p50')} / {inc.get('p99')} / {inc.get('max')}"),
        ("rows read per call p50 / max", f"{rows.get('p50')} / {rows.get('max')}"),
        ("first check of the whole load, ms", str(res["first_check_of_whole_load_ms"])),
        ("full join ms at start / end", f"{full['start']} / {full['end']}"),
        ("checker backend CPU s", str(res["checker_backend_cpu_s"])),
        ("all PostgreSQL CPU s, same period", str(res["postgres_cpu_s"])),
        ("checker share of PostgreSQL CPU", "-" if share is None else f"{100 * share:.2f} %"),
        ("incremental = full join (matched, total)",
         f"{res['equal']}: {res['incremental_result']} vs {res['full_join_result']}"),
    ]

"""The Spark engine: one PySpark Structured Streaming query per load, run as `python job.py CONFIG.json`.

What the query computes (same semantics as pipelines/flink/job.py and pipelines/baseline/job.py):

* reads the load's topic with Spark's Kafka source (startingOffsets earliest), value as raw UTF-8 text;
* decides for every record, with built-in functions only (no Python or pandas UDF), whether it is well-formed
  (README "What counts as malformed"): `try_parse_json` turns the text into a VARIANT (NULL when it is not
  JSON; see parse() for trailing text, which Spark's parsers ignore), and
  `schema_of_variant(variant_get(v, '$.field'))` names the JSON type of each rule field exactly as
  it was written: 'BIGINT' only for a JSON integer that fits in 64 bits; a numeric string is 'STRING', 42.0
  is 'DECIMAL(1,0)', 4.2e1 is 'DOUBLE', true is 'BOOLEAN', null is 'VOID', a missing field (or a record that
  is not an object) gives NULL. So the rule is four string comparisons (well_formed_expr), and the clock rule
  one more: an event time beyond the batch's clock plus max_clock_skew is malformed (within_skew_expr);
* malformed records: `observe()` on the parsed stream collects each batch's malformed records (partition,
  offset, text) as an observed metric, reported with the batch's progress; the progress listener writes one
  row each to `harness_malformed`. This keeps one Kafka scan and one parse per record: a union of a window
  branch and a malformed branch would scan the topic twice per batch and doubled the batch time here
  (~0.5 s -> ~1 s on this 2-core machine);
* well-formed records (heartbeats included) get `ts = timestamp_millis(event_time)`, then withWatermark and the
  window aggregation per key and window: tumbling `window(ts, size)`, sliding `window(ts, size, slide)` or
  `session_window(ts, gap - 1 ms)` (see session_gap). The filter on well-formedness sits below withWatermark
  on purpose: a malformed record never reaches the watermark operator. Heartbeats are NOT filtered before the
  aggregation: Spark pushes a filter on `key` below withWatermark, which would keep heartbeats from moving the
  watermark; they are aggregated under their own key and dropped in the sink;
* the sink is foreachBatch: it collects the (small) batch in the driver and appends, in one PostgreSQL
  transaction per batch (COPY), every window row except the heartbeat key's to `harness_results_log` (the
  database stamps inserted_at; a trigger upserts the final table);
* after every batch the StreamingQueryListener writes `status_file` (source offsets, cumulative input rows, the
  last progress's rates, durations, state operators and watermark) for the harness.

Watermark: Spark's global watermark is max(event time seen) - watermark_delay, computed at the end of each
batch and used by the next. spark.sql.streaming.statefulOperator.allowMultiple is set to false: with the
default, late rows are judged by the *previous* batch's watermark (a rule for chains of stateful operators),
which let late events into windows one batch longer than the watermark says. Malformed records and integers
beyond 64 bits (orjson accepts up to 2^64 - 1; no engine's BIGINT holds them) count as malformed.

Output mode append (default): a window is emitted once, by the first batch that runs after the watermark
passed its end. Output mode update: every batch emits the windows it changed (partial values).
Trigger: processingTime (default) or realTime (Spark 4.1+; a ForeachWriter sink since real-time mode refuses
foreachBatch; Spark 4.2 refuses aggregations in it), or continuous (refused by Spark for watermarks and
aggregations; kept so Spark says so itself).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from harness.engines import warmup  # the same warm-up as every JVM engine's
from harness.records import HEARTBEAT_KEY, RULE_FIELDS  # the one rule (PYTHONPATH holds the project root)
ENGINE = "spark"
MALFORMED_METRIC = "malformed"
NONCE = uuid.uuid4().hex  # see parse()
FAULT_ENV = "HARNESS_SPARK_FAIL_AFTER_WRITE"
# Fault point for tests: after the Nth micro-batch that wrote window rows, the driver stops there (rows committed
# to PostgreSQL, the batch not in Spark's commit log) until it is killed: a kill_job then hits that moment.
STALL_ENV = "HARNESS_SPARK_STALL_AFTER_WRITE"
BATCHES_DDL = """CREATE TABLE IF NOT EXISTS harness_spark_batches (
    load_id text NOT NULL, checkpoint text NOT NULL, batch_id bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (load_id, checkpoint, batch_id))"""
# Spark's error classes for a query it will not run as asked (an unsupported mode, operator or sink), as opposed
# to a query that started and then failed.
REFUSAL_CLASSES = ("STREAMING_REAL_TIME_MODE", "STREAMING_OUTPUT_MODE", "UNSUPPORTED_", "NOT_SUPPORTED",
                   "IDENTICAL_SOURCES_IN_UNION_NOT_SUPPORTED", "OUTPUT_MODE_NOT_SUPPORTED")

# What schema_of_variant names each JSON type of the rule: BIGINT only for an integer that fits in 64 bits.
VARIANT_TYPES = {"integer": "BIGINT", "string": "STRING"}

RESULT_COLUMNS = ("load_id", "engine", "repeat", "key", "window_start", "window_end", "cnt", "sum", "min", "max",
                  "last_sent_at")
MALFORMED_COLUMNS = ("load_id", "engine", "repeat", "kafka_partition", "kafka_offset", "raw")


def log(msg: str) -> None:
    print(f"[spark-job {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def interval(ms: int) -> str:
    """A Spark interval string, exact to the millisecond."""
    if ms < 0:
        raise ValueError(f"negative interval: {ms} ms")
    return f"{int(ms)} milliseconds"


def session_gap(gap_ms: int) -> int:
    """The gap given to Spark for the harness's session rule.

    The harness puts two events of a key in one session when they are less than `gap` apart. Spark's
    session_window merges sessions [t, t + gap) that overlap *or touch*: events exactly `gap` apart end up
    in one session (seen on Spark 4.2.0: events at 0 and 1000 with gap 1 s give one session [0, 2000)). With
    gap - 1 ms Spark merges exactly when t2 - t1 <= gap - 1, i.e. < gap (event times are whole milliseconds);
    the session then ends 1 ms early, which the query adds back to window_end. Cost: the session closes when
    the watermark reaches last + gap - 1 instead of last + gap.
    """
    return gap_ms - 1 if gap_ms > 1 else gap_ms


# ------------------------------------------------------------------------------------------------- the query


def well_formed_expr() -> str:
    checks = [f"schema_of_variant(variant_get(v, '$.{f}')) = '{VARIANT_TYPES[t]}'" for f, t in RULE_FIELDS.items()]
    # is_valid_utf8: the text must be UTF-8 (the harness's parser refuses invalid bytes).
    return "coalesce(is_valid_utf8(raw) AND v IS NOT NULL AND " + " AND ".join(checks) + ", false)"


def kafka_input(spark: Any, cfg: dict[str, Any]) -> Any:
    """The topic as (kafka_partition, kafka_offset, raw): the value as text, no parsing yet."""
    from pyspark.sql import functions as F

    src = (spark.readStream.format("kafka")
           .option("kafka.bootstrap.servers", cfg["bootstrap"])
           .option("subscribe", cfg["topic"])
           .option("startingOffsets", cfg.get("starting_offsets", "earliest"))
           .option("failOnDataLoss", "true"))
    for k, v in (cfg.get("kafka_options") or {}).items():
        src = src.option(k, str(v))
    return src.load().select(
        F.col("partition").alias("kafka_partition"), F.col("offset").alias("kafka_offset"),
        F.col("value").cast("string").alias("raw"))


def within_skew_expr(skew_ms: int | None) -> str:
    """The rule's second half: an event time beyond the batch's clock plus max_clock_skew is malformed, so it
    never reaches the watermark (Spark's is the maximum over partitions: one such record would move it a day)."""
    if skew_ms is None:
        return "true"
    return (f"coalesce(try_variant_get(v, '$.event_time', 'bigint') <= "
            f"unix_millis(current_timestamp()) + {int(skew_ms)}, false)")


def parse(raw: Any, skew_ms: int | None = None) -> Any:
    """Adds the parsed record `v` (a VARIANT) and the rule's verdict `ok` (never NULL).

    Spark's JSON parsers (parse_json, from_json, get_json_object) stop after the first complete value and
    ignore what follows, so `{...} x` or `{...}}` would parse. The text is therefore parsed wrapped as
    `[<text>,"<nonce>"]`: the sentinel string (random per job run) is element 1 of the parsed array only when
    the text in front of it is exactly one JSON value, and nothing can follow it but `]`.
    """
    from pyspark.sql import functions as F

    wrapped = (raw.withColumn("_arr", F.expr(f"try_parse_json(concat('[', raw, ',\"{NONCE}\"]'))"))
               .withColumn("_whole", F.expr(f"coalesce(try_variant_get(_arr, '$[1]', 'string') = '{NONCE}' "
                                            f"AND variant_get(_arr, '$[2]') IS NULL, false)")))
    return (wrapped.withColumn("v", F.expr("variant_get(_arr, '$[0]')"))
            .withColumn("ok", F.expr(f"_whole AND {well_formed_expr()} AND {within_skew_expr(skew_ms)}"))
            .drop("_arr", "_whole"))


def malformed_columns() -> list[Any]:
    from pyspark.sql import functions as F

    # PostgreSQL text cannot hold NUL characters; a null value (a tombstone) is ''
    return [F.col("kafka_partition").cast("int").alias("kafka_partition"),
            F.col("kafka_offset").cast("bigint").alias("kafka_offset"),
            F.regexp_replace(F.coalesce(F.col("raw"), F.lit("")), "\u0000", "").alias("raw")]


def observe_malformed(parsed: Any) -> Any:
    """Collects the batch's malformed records as an observed metric (reported with the batch's progress) on
    the same scan as the windows: one Kafka read and one JSON parse per record, no second branch."""
    from pyspark.sql import functions as F

    return parsed.observe(MALFORMED_METRIC, F.count(F.when(~F.col("ok"), 1)).alias("n"),
                          F.collect_list(F.when(~F.col("ok"), F.struct(*malformed_columns()))).alias("rows"))


def build_windows(parsed: Any, cfg: dict[str, Any]) -> Any:
    """Well-formed records (heartbeats included) -> watermark -> windows per key, in the sink's columns."""
    from pyspark.sql import functions as F

    window = cfg["window"]
    kind = window["type"]
    end_shift = 0
    # The filter on `ok` sits below withWatermark: a malformed record never reaches the watermark operator.
    # Nothing filters on `key` before the aggregation (Spark would push it below withWatermark and heartbeats
    # would stop moving the watermark): heartbeat rows are dropped in the sink.
    events = (parsed.where(F.col("ok"))
              .select(F.expr("try_variant_get(v, '$.key', 'string')").alias("key"),
                      F.expr("try_variant_get(v, '$.value', 'bigint')").alias("value"),
                      # sent_at is not part of the rule: a non-integer sent_at counts as missing (NULL)
                      F.expr("CASE WHEN schema_of_variant(variant_get(v, '$.sent_at')) = 'BIGINT' "
                             "THEN try_variant_get(v, '$.sent_at', 'bigint') END").alias("sent_at"),
                      F.expr("timestamp_millis(try_variant_get(v, '$.event_time', 'bigint'))").alias("ts"))
              .withWatermark("ts", interval(int(cfg.get("watermark_delay_ms") or 0))))
    if kind == "tumbling":
        w = F.window("ts", interval(window["size_ms"]))
    elif kind == "sliding":
        size, slide = int(window["size_ms"]), int(window["slide_ms"])
        if size % slide:
            raise ValueError(f"sliding window: size {size} ms is not a multiple of slide {slide} ms")
        w = F.window("ts", interval(size), interval(slide))
    elif kind == "session":
        gap = int(window["gap_ms"])
        w = F.session_window("ts", interval(session_gap(gap)))
        end_shift = gap - session_gap(gap)
    else:
        raise ValueError(f"window.type: expected tumbling, sliding or session, got {kind!r}")
    return (events.groupBy(F.col("key"), w.alias("w"))
            .agg(F.count(F.lit(1)).alias("cnt"), F.sum("value").alias("sum"), F.min("value").alias("min"),
                 F.max("value").alias("max"), F.max("sent_at").alias("last_sent_at"))
            .select("key", F.expr("unix_millis(w.start)").alias("window_start"),
                    (F.expr("unix_millis(w.end)") + F.lit(end_shift)).alias("window_end"),
                    "cnt", "sum", "min", "max", "last_sent_at"))


def build_query(raw: Any, cfg: dict[str, Any]) -> Any:
    """The micro-batch query: window rows out; malformed records as the observed metric 'malformed'."""
    return build_windows(observe_malformed(parse(raw, cfg.get("max_clock_skew_ms"))), cfg)


def build_malformed(raw: Any, cfg: dict[str, Any]) -> Any:
    """Malformed records as rows (real-time mode, which runs them as a query of their own)."""
    from pyspark.sql import functions as F

    return parse(raw, cfg.get("max_clock_skew_ms")).where(~F.col("ok")).select(*malformed_columns())


# -------------------------------------------------------------------------------------------------- the sink


class Sink:
    """Appends to PostgreSQL from the driver: window rows from foreachBatch (one transaction per batch),
    malformed records from each batch's observed metric (written when the batch's progress arrives)."""

    def __init__(self, cfg: dict[str, Any], dry_run: bool = False) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.ident = (cfg["load_id"], ENGINE, int(cfg.get("repeat", 0)))
        self._conn: Any = None
        self.lock = threading.Lock()
        self.rows_written = 0
        self.malformed_written = 0
        self.heartbeat_rows = 0
        self.last_ms: dict[str, Any] = {}
        self.batches_with_rows = 0
        # Fault point for tests: fail the query after the Nth micro-batch that wrote window rows.
        self.fail_after_write = 0 if dry_run else int(os.environ.get(FAULT_ENV) or 0)
        self.stall_after_write = 0 if dry_run else int(os.environ.get(STALL_ENV) or 0)
        # "idempotent": a batch's rows and its id commit in one transaction, and a batch id already committed
        # (a replay after a restart from the checkpoint) writes nothing: Spark's documented foreachBatch pattern.
        self.idempotent = cfg.get("sink_mode") == "idempotent"
        self.checkpoint = str(cfg.get("checkpoint_dir") or "")
        self.replayed_batches_skipped = 0
        self.replayed_rows_skipped = 0
        self._batches_table = False

    def conn(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.cfg["dsn"])
        return self._conn

    def _copy(self, table: str, columns: tuple[str, ...], rows: list[tuple], batch_id: int | None = None) -> bool:
        """COPY the rows in one transaction. With a batch id, the id is claimed in the same transaction first;
        False (nothing written) when that batch was committed before."""
        with self.lock:
            conn = self.conn()
            if batch_id is not None and not self._batches_table:
                with conn.transaction():
                    conn.execute(BATCHES_DDL)
                self._batches_table = True
            with conn.transaction(), conn.cursor() as cur:
                if batch_id is not None:
                    cur.execute("INSERT INTO harness_spark_batches (load_id, checkpoint, batch_id) VALUES (%s, %s, %s) "
                                "ON CONFLICT DO NOTHING", (self.ident[0], self.checkpoint, batch_id))
                    if cur.rowcount == 0:
                        return False
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row)
        return True

    def write_results(self, rows: list[tuple], batch_id: int | None = None) -> None:
        """rows: (key, window_start, window_end, cnt, sum, min, max, last_sent_at); heartbeat rows dropped.
        With the idempotent sink and a batch id, the batch's id commits with its rows, once."""
        out = []
        for r in rows:
            if r[0] == HEARTBEAT_KEY:
                self.heartbeat_rows += 1
            else:
                out.append((*self.ident, *r))
        if self.dry_run or not out:
            return
        if self._copy("harness_results_log", RESULT_COLUMNS, out, batch_id if self.idempotent else None):
            self.rows_written += len(out)
        else:
            self.replayed_batches_skipped += 1
            self.replayed_rows_skipped += len(out)

    def write_malformed(self, rows: list[tuple]) -> None:
        """rows: (kafka_partition, kafka_offset, raw)."""
        if rows and not self.dry_run:
            self._copy("harness_malformed", MALFORMED_COLUMNS, [(*self.ident, *r) for r in rows])
            self.malformed_written += len(rows)

    def foreach_batch(self, df: Any, batch_id: int) -> None:
        t0 = time.perf_counter()
        rows = [tuple(r) for r in df.collect()]
        t1 = time.perf_counter()
        written = self.rows_written
        self.write_results(rows, batch_id)
        t2 = time.perf_counter()
        self.last_ms = {"batch_id": batch_id, "rows": len(rows), "collect_ms": round((t1 - t0) * 1000, 1),
                        "write_ms": round((t2 - t1) * 1000, 1)}
        if self.rows_written > written:
            self.batches_with_rows += 1
            # Fires once: the count only grows (the replayed batch counts again, as N + 1). The batch's rows are
            # committed to PostgreSQL, Spark's commit log does not have the batch yet: a restarted query runs
            # this batch again from its offset log (a replay).
            if self.fail_after_write and self.batches_with_rows == self.fail_after_write:
                raise RuntimeError(f"{FAULT_ENV}: failing micro-batch {batch_id} after its rows were written")
            marker = Path(self.cfg.get("work_dir") or ".") / "stall-after-write-fired"
            if self.stall_after_write and self.batches_with_rows == self.stall_after_write and not marker.exists():
                marker.touch()          # once per engine run: the restarted driver must go on
                log(f"{STALL_ENV}: micro-batch {batch_id} written; stopping here until killed")
                while True:
                    time.sleep(1)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass


class RowWriter:
    """A ForeachWriter for real-time mode (which refuses foreachBatch): runs in the executors' Python workers.
    Rows of 8 columns are window rows, rows of 3 malformed records."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.sink: Sink | None = None

    def open(self, partition_id: int, epoch_id: int) -> bool:
        self.sink = Sink(self.cfg)
        return True

    def process(self, row: Any) -> None:
        assert self.sink is not None
        r = tuple(row)
        if len(r) == len(MALFORMED_COLUMNS) - 3:
            self.sink.write_malformed([r])
        else:
            self.sink.write_results([r])

    def close(self, error: Any) -> None:
        if self.sink is not None:
            self.sink.close()


# --------------------------------------------------------------------------------------------- progress


def iso_to_ms(s: str | None) -> int | None:
    if not s:
        return None
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def kafka_offsets(offset: Any, topic: str) -> dict[str, int]:
    """{"topic": {"0": 12, ...}} (a dict or its JSON text) -> {"0": 12, ...}."""
    if isinstance(offset, str):
        try:
            offset = json.loads(offset)
        except ValueError:
            return {}
    if not isinstance(offset, dict):
        return {}
    part = offset.get(topic) or {}
    return {str(p): int(o) for p, o in part.items()}


class Progress:
    """Accumulates every batch's progress and writes the status file the engine reads.

    records_in is the sum of Spark's numInputRows over all batches (the query scans the source once). Beside
    it, records_by_offsets sums endOffset - startOffset per partition and batch (a batch without a start began
    at offset 0 of the fresh topic): the two agree on a topic without transactions or compaction.
    """

    RECENT = 120

    def __init__(self, cfg: dict[str, Any], sink: Sink) -> None:
        self.cfg = cfg
        self.path = Path(cfg["status_file"])
        self.topic = cfg["topic"]
        self.sink = sink
        self.lock = threading.Lock()
        self.batches = 0
        self.records_in = 0
        self.records_by_offsets = 0
        self.dropped_by_watermark = 0
        self.offsets: dict[str, int] = {}
        self.latest: dict[str, int] = {}
        self.durations: list[int] = []        # triggerExecution ms of every batch
        self.recent: list[dict[str, Any]] = []
        self.max_state_rows = 0
        self.last: dict[str, Any] = {}
        self.error: str | None = None
        self.warmup: dict[str, Any] = {}
        self.refused: str | None = None        # Spark's own words when it would not run the query as asked
        self.restarts: list[dict[str, Any]] = []
        self.query_batches = 0                 # completed batches of the current query (since its last start)
        self.master: str | None = None
        self.executors: list[str] = []

    def write(self, running: bool = True) -> None:
        with self.lock:
            last = self.last
            state = [{k: op.get(k) for k in ("operatorName", "numRowsTotal", "numRowsUpdated", "numRowsRemoved",
                                             "memoryUsedBytes", "numRowsDroppedByWatermark", "numShufflePartitions")}
                     for op in last.get("stateOperators", [])]
            d = sorted(self.durations)
            doc = {
                "running": running, "batches": self.batches,
                "batch_id": last.get("batchId"), "timestamp": last.get("timestamp"),
                "offsets": self.offsets, "latest_offsets": self.latest, "records_in": self.records_in,
                "records_by_offsets": self.records_by_offsets,
                "input_rows_per_second": last.get("inputRowsPerSecond"),
                "processed_rows_per_second": last.get("processedRowsPerSecond"),
                "num_input_rows": last.get("numInputRows"),
                "duration_ms": last.get("durationMs"),
                "state_operators": state,
                "max_state_rows": self.max_state_rows,
                "watermark": (last.get("eventTime") or {}).get("watermark"),
                "watermark_ms": iso_to_ms((last.get("eventTime") or {}).get("watermark")),
                "num_rows_dropped_by_watermark": self.dropped_by_watermark,
                "batch_ms": {"count": len(d), "p50": d[len(d) // 2] if d else None,
                             "p90": d[min(len(d) - 1, int(len(d) * 0.9))] if d else None,
                             "p99": d[min(len(d) - 1, int(len(d) * 0.99))] if d else None,
                             "max": d[-1] if d else None, "mean": round(sum(d) / len(d), 1) if d else None},
                "recent_batches": self.recent,
                "sink": {"mode": "idempotent" if self.sink.idempotent else "append",
                         "rows_written": self.sink.rows_written, "malformed_written": self.sink.malformed_written,
                         "heartbeat_rows_dropped": self.sink.heartbeat_rows,
                         "replayed_batches_skipped": self.sink.replayed_batches_skipped,
                         "replayed_rows_skipped": self.sink.replayed_rows_skipped},
                "warmup": self.warmup,
                "master": self.master, "executors": self.executors,
                "restarts": self.restarts,
                "refused": self.refused,
                "error": self.error,
            }
        write_atomic(self.path, doc)

    def on_progress(self, p: dict[str, Any]) -> None:
        with self.lock:
            self.batches += 1
            self.query_batches += 1
            self.records_in += int(p.get("numInputRows") or 0)
            for src in p.get("sources", []):
                start = kafka_offsets(src.get("startOffset"), self.topic)
                end = kafka_offsets(src.get("endOffset"), self.topic)
                if end:
                    self.records_by_offsets += sum(o - start.get(part, 0) for part, o in end.items())
                    self.offsets = end
                latest = kafka_offsets(src.get("latestOffset"), self.topic)
                if latest:
                    self.latest = latest
            for op in p.get("stateOperators", []):
                self.dropped_by_watermark += int(op.get("numRowsDroppedByWatermark") or 0)
                self.max_state_rows = max(self.max_state_rows, int(op.get("numRowsTotal") or 0))
            dur = p.get("durationMs") or {}
            if dur.get("triggerExecution") is not None:
                self.durations.append(int(dur["triggerExecution"]))
            self.recent.append({"batch_id": p.get("batchId"), "timestamp": p.get("timestamp"),
                                "rows": p.get("numInputRows"), "duration_ms": dur,
                                "watermark": (p.get("eventTime") or {}).get("watermark"),
                                "sink": dict(self.sink.last_ms)})
            del self.recent[:-self.RECENT]
            self.last = p
            observed = ((p.get("observedMetrics") or {}).get(MALFORMED_METRIC) or {})
            malformed = [(int(r["kafka_partition"]), int(r["kafka_offset"]), r.get("raw") or "")
                         for r in observed.get("rows") or []]
            if int(observed.get("n") or 0) != len(malformed):
                self.error = f"batch {p.get('batchId')}: {observed.get('n')} malformed counted, {len(malformed)} listed"
            try:
                self.sink.write_malformed(malformed)
            except Exception as exc:
                self.error = f"writing {len(malformed)} malformed records of batch {p.get('batchId')}: {exc}"
                log(self.error)
        self.write()


def make_listener(progress: Progress, query_id: list[str]) -> Any:
    from pyspark.sql.streaming import StreamingQueryListener

    class Listener(StreamingQueryListener):
        def onQueryStarted(self, event: Any) -> None:
            pass

        def onQueryProgress(self, event: Any) -> None:
            try:
                p = json.loads(event.progress.json)
                if query_id and p.get("id") == query_id[0]:  # not the warm-up query's progress
                    progress.on_progress(p)
            except Exception as exc:  # never let a status write break the listener bus
                log(f"progress listener: {type(exc).__name__}: {exc}")

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            pass

    return Listener()


# ------------------------------------------------------------------------------------------------ warm-up


def warm_up(spark: Any, cfg: dict[str, Any], progress: Progress) -> None:
    """Run the same query on warm-up records before the real one, so the JVM's JIT, Spark's generated code
    and the Kafka client are warm when the load starts: a cold JVM takes 2-10 s for its first micro-batches,
    longer than a late delay allows. The records (harness.engines.warmup, the same as Flink's) go to a private
    topic (`<topic>-warmup`, deleted afterwards), or to local files when that topic cannot be made. The warm-up
    sink writes nothing."""
    from pyspark.sql import functions as F

    batches = int(cfg.get("warmup_batches") or 0)
    if batches <= 0:
        return
    t = time.monotonic()
    root = Path(cfg["work_dir"]).resolve() / "warmup"
    lines = warmup.batches(cfg, batches)
    topic: warmup.WarmupTopic | None = None
    try:
        topic = warmup.WarmupTopic(cfg["bootstrap"], cfg["topic"], int(cfg.get("partitions") or 1), lines)
        raw = kafka_input(spark, {**cfg, "topic": topic.name,
                                  "kafka_options": {"maxOffsetsPerTrigger": str(len(lines[0]))}})
        source = f"topic {topic.name}"
    except Exception as exc:
        log(f"warm-up: no Kafka topic ({exc}); using local files")
        inp = root / "input"
        inp.mkdir(parents=True, exist_ok=True)
        for b, batch in enumerate(lines):
            (inp / f"part-{b:04d}.txt").write_text("\n".join(batch) + "\n")
        raw = (spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(inp))
               .select(F.lit(0).alias("kafka_partition"), F.lit(0).cast("bigint").alias("kafka_offset"),
                       F.col("value").alias("raw")))
        source = f"files in {inp}"
    sink = Sink(cfg, dry_run=True)
    progress.sink.conn()  # the real sink's connection: open it now, not in the first batch
    try:
        q = (build_query(raw, cfg).writeStream.outputMode(cfg.get("output_mode") or "append")
             .option("checkpointLocation", str(root / "checkpoint"))
             .trigger(availableNow=True).foreachBatch(sink.foreach_batch).start())
        q.awaitTermination(300)
        durations = [int((p.get("durationMs") or {}).get("triggerExecution", 0)) for p in
                     (json.loads(x.json) for x in q.recentProgress)]
        if q.isActive:
            q.stop()
    finally:
        if topic is not None:
            if (problem := topic.delete()) is not None:
                log(f"warm-up: {problem}")
    progress.warmup = {"source": source, "batches": len(durations), "batch_ms": durations,
                       "seconds": round(time.monotonic() - t, 1)}
    log(f"warm-up on {source}: {len(durations)} batches in {time.monotonic() - t:.1f} s, batch ms {durations}")


# ----------------------------------------------------------------------------------------------- running


def spark_session(cfg: dict[str, Any]) -> Any:
    from pyspark.sql import SparkSession

    work = Path(cfg["work_dir"]).resolve()
    conf: dict[str, str] = {
        "spark.app.name": f"harness-{cfg['load_id']}",
        "spark.master": cfg.get("master") or "local[2]",
        "spark.jars": ",".join(str(Path(j).resolve()) for j in cfg.get("jars", [])),
        "spark.driver.memory": cfg.get("driver_memory") or "1g",
        "spark.executor.memory": cfg.get("executor_memory") or "1g",
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(int(cfg.get("shuffle_partitions") or 2)),
        # the harness's parser (orjson) keeps the last of duplicate keys; Spark's default refuses the record
        "spark.sql.variant.allowDuplicateKeys": "true",
        # One stateful operator: judge late rows by the current batch's watermark, like eviction does. The
        # default (true, for chains of stateful operators) judges them by the previous batch's watermark,
        # so a late event survives one micro-batch longer than the watermark says.
        "spark.sql.streaming.statefulOperator.allowMultiple": "false",
        "spark.local.dir": str(work / "spark-local"),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.warehouse.dir": str(work / "spark-warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={work / 'derby'} {cfg.get('collector') or ''}".strip(),
    }
    if cfg.get("collector"):
        conf["spark.executor.extraJavaOptions"] = str(cfg["collector"])
    if cfg.get("cores_max"):
        conf["spark.cores.max"] = str(int(cfg["cores_max"]))
    conf.update({str(k): str(v) for k, v in (cfg.get("spark_conf") or {}).items()})
    builder = SparkSession.builder
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.get("log_level") or "WARN")
    return spark


def start_query(spark: Any, cfg: dict[str, Any], sink: Sink) -> list[Any]:
    """The running queries: one (the union) with a processing-time trigger; with the real-time trigger two
    (window rows and malformed rows, each from its own Kafka source: real-time mode refuses a union of two
    identical sources, and foreachBatch, so each writes through a ForeachWriter)."""
    trig = cfg.get("trigger") or {"kind": "processing_time", "interval_ms": 500}
    kind, every = trig["kind"], interval(int(trig.get("interval_ms") or 0))
    name = f"harness_{cfg['load_id']}".replace(".", "_").replace("-", "_")
    checkpoint = Path(cfg["checkpoint_dir"]).resolve()

    def writer(df: Any, suffix: str = "") -> Any:
        return (df.writeStream.queryName(name + suffix).outputMode(cfg.get("output_mode") or "append")
                .option("checkpointLocation", str(checkpoint / suffix.strip("_")) if suffix else str(checkpoint)))

    if kind == "processing_time":
        out = build_query(kafka_input(spark, cfg), cfg)
        return [writer(out).trigger(processingTime=every).foreachBatch(sink.foreach_batch).start()]
    if kind == "continuous":
        out = build_query(kafka_input(spark, cfg), cfg)
        return [writer(out).trigger(continuous=every).foreach(RowWriter(cfg)).start()]
    if kind == "real_time":
        # Real-time mode refuses foreachBatch and (probably) observed metrics: window rows and malformed
        # records run as two queries, each with its own Kafka source and a ForeachWriter.
        windows = build_windows(parse(kafka_input(spark, cfg), cfg.get("max_clock_skew_ms")), cfg)
        malformed = build_malformed(kafka_input(spark, cfg), cfg)
        return [writer(windows, "_windows").trigger(realTime=every).foreach(RowWriter(cfg)).start(),
                writer(malformed, "_malformed").trigger(realTime=every).foreach(RowWriter(cfg)).start()]
    raise ValueError(f"trigger: expected processing_time, real_time or continuous, got {kind!r}")


def refusal(exc: BaseException) -> str | None:
    """Spark's message when the exception says it will not run this query (analysis or an unsupported mode,
    operator or sink), else None (a query that ran and failed)."""
    text = error_text(exc)
    kinds = {c.__name__ for c in type(exc).__mro__}
    if kinds & {"AnalysisException", "UnsupportedOperationException"} or any(
            text.lstrip("[").startswith(c) or f"[{c}" in text for c in REFUSAL_CLASSES):
        return text
    return None


def executor_addresses(spark: Any) -> list[str]:
    """host:port of every executor the driver knows (the driver itself included, as Spark lists it)."""
    infos = spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()
    return sorted(f"{i.host()}:{i.port()}" for i in infos)


def error_text(exc: BaseException) -> str:
    """Spark's own message: the first line of a captured exception (its desc), else the last 'Caused by:'. A
    failed query's exception ([STREAM_FAILED] Query [...] terminated with exception: <cause>, then the query's
    plan) is reduced to the cause."""
    desc = getattr(exc, "desc", None) or getattr(exc, "_desc", None)
    if desc:
        lines = [ln.strip() for ln in str(desc).strip().splitlines()]
        first = lines[0]
        marker = "terminated with exception: "
        if first.startswith("[STREAM_FAILED]") and marker in first:
            first = first.split(marker, 1)[1].removesuffix(" SQLSTATE: XXKST").strip()
        if first.endswith("Traceback (most recent call last):"):
            # an error in the Python sink: the traceback's last line says what it was
            raised = [ln for ln in lines[1:] if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:", ln)]
            first = first.removesuffix("Traceback (most recent call last):").strip() + (
                f" {raised[0]}" if raised else "")
        return first
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    causes = [ln for ln in lines if ln.startswith("Caused by:")]
    return causes[-1] if causes else (lines[0] if lines else repr(exc))


def run(cfg: dict[str, Any]) -> int:
    sink = Sink(cfg)
    progress = Progress(cfg, sink)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    spark = spark_session(cfg)
    query_id: list[str] = []
    spark.streams.addListener(make_listener(progress, query_id))
    try:
        warm_up(spark, cfg, progress)
    except Exception as exc:  # a failed warm-up costs latency, not correctness: say so and go on
        log(f"warm-up failed (continuing cold): {error_text(exc)}")
        progress.warmup = {"error": error_text(exc)}
    if stop.is_set():
        spark.stop()
        return 0
    try:
        queries = start_query(spark, cfg, sink)
    except Exception as exc:
        progress.error = error_text(exc)
        progress.refused = refusal(exc)
        progress.write(running=False)
        log(f"the query did not start: {exc}")
        spark.stop()
        return 1
    query_id.append(str(queries[0].id))  # the status follows the (window) query
    progress.master = spark.sparkContext.master
    log(f"query {queries[0].id} started ({cfg.get('master')}, trigger {cfg.get('trigger')}, "
        f"output mode {cfg.get('output_mode', 'append')})")
    restarts_left = int(cfg.get("query_restarts") or 0)
    code = 0
    next_executor_poll = 0.0
    while not stop.is_set() and code == 0:
        if time.monotonic() >= next_executor_poll:
            try:
                progress.executors = executor_addresses(spark)
            except Exception as exc:
                log(f"executor list: {exc}")
            next_executor_poll = time.monotonic() + 5
        for query in queries:
            try:
                if query.awaitTermination(0.5 / len(queries)):
                    exc = query.exception()
                    if exc is not None:
                        raise exc
                    log(f"query {query.name} ended")
                    stop.set()
            except Exception as exc:  # awaitTermination raises the query's exception
                text = error_text(exc)
                refused = refusal(exc) if progress.query_batches == 0 and not progress.restarts else None
                if refused is None and restarts_left > 0 and not stop.is_set():
                    restarts_left -= 1
                    log(f"query failed, restarting it from its checkpoint ({restarts_left} restarts left): {text}")
                    for q in queries:
                        if q.isActive:
                            q.stop()
                    with progress.lock:
                        progress.restarts.append({"at_ms": int(time.time() * 1000), "error": text,
                                                  "after_batches": progress.query_batches})
                        progress.query_batches = 0
                    try:
                        queries = start_query(spark, cfg, sink)
                    except Exception as again:
                        text = f"{text}; the restart failed: {error_text(again)}"
                    else:
                        query_id[0] = str(queries[0].id)  # the same id: Spark keeps it in the checkpoint
                        progress.write()
                        break
                progress.error = text
                progress.refused = refused  # refused when its first batch was planned: it never ran
                log(f"query failed: {exc}")
                code = 1
                break
    log("stopping")
    for query in queries:
        try:
            # Stop between batches: stopping interrupts a running batch, which Spark logs as errors.
            deadline = time.monotonic() + 10
            while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
                time.sleep(0.02)
            if query.isActive:
                query.stop()
        except Exception as exc:
            log(f"stopping {query.name}: {exc}")
    log("stopped")
    progress.write(running=False)
    sink.close()
    try:
        spark.stop()
    except Exception:
        pass
    return code


def main(argv: list[str]) -> NoReturn:
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONFIG.json", file=sys.stderr)
        sys.exit(2)
    cfg = json.loads(Path(argv[1]).read_text())
    try:
        code = run(cfg)
    except Exception as exc:
        log(f"failed: {type(exc).__name__}: {exc}")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv)

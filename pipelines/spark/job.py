"""The Spark engine: one PySpark Structured Streaming query per load, run as `python job.py CONFIG.json`.

What the query computes (same semantics as pipelines/flink/job.py and pipelines/baseline/job.py):

* reads the load's topic with Spark's Kafka source (startingOffsets earliest), value as raw UTF-8 text;
* decides for every record, with built-in functions only (no Python or pandas UDF), whether it is well-formed
  (README "What counts as malformed"): `try_parse_json` turns the text into a VARIANT (NULL when it is not
  JSON), and `schema_of_variant(variant_get(v, '$.field'))` names the JSON type of each rule field exactly as
  it was written: 'BIGINT' only for a JSON integer that fits in 64 bits; a numeric string is 'STRING', 42.0
  is 'DECIMAL(..)', 4.2e1 is 'DOUBLE', true is 'BOOLEAN', null is 'VOID', a missing field (or a record that
  is not an object) gives NULL. So the rule is four string comparisons (see WELL_FORMED);
* splits the stream in two branches of one query (a union, so there is one trigger, one progress report
  and one checkpoint):
  - well-formed records (heartbeats included) get `ts = timestamp_millis(event_time)`, then withWatermark and
    the window aggregation per key and window: tumbling `window(ts, size)`, sliding `window(ts, size, slide)`
    or `session_window(ts, gap - 1 ms)` (see session_gap). The filter on well-formedness sits below
    withWatermark on purpose: a malformed record never reaches the watermark operator. Heartbeats are NOT
    filtered before the aggregation: Spark pushes a filter on `key` below withWatermark, which would keep
    heartbeats from moving the watermark; they are aggregated under their own key and dropped in the sink;
  - malformed records become one row each (partition, offset, text);
* the sink is foreachBatch: it collects the (small) batch in the driver and appends, in one PostgreSQL
  transaction per batch, every window row except the heartbeat key's to `harness_results_log` and every
  malformed row to `harness_malformed` (COPY; the database stamps inserted_at; a trigger upserts the final
  table);
* after every batch a StreamingQueryListener writes `status_file` (source offsets, cumulative input rows, the
  last progress's rates, durations, state operators and watermark) for the harness.

Output mode append (default): a window is emitted once, by the first batch that runs after the watermark
passed its end. Output mode update: every batch emits the windows it changed (partial values).
Trigger: processingTime (default) or realTime (Spark 4.1+; a ForeachWriter sink since real-time mode refuses
foreachBatch), or continuous (refused by Spark for aggregations; kept so Spark says so itself).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

HEARTBEAT_KEY = "__heartbeat__"
ENGINE = "spark"

RULE_FIELDS = {"event_id": "BIGINT", "value": "BIGINT", "event_time": "BIGINT", "key": "STRING"}

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
    checks = [f"schema_of_variant(variant_get(v, '$.{f}')) = '{t}'" for f, t in RULE_FIELDS.items()]
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


def build_output(raw: Any, cfg: dict[str, Any]) -> Any:
    """The streaming DataFrame: window rows (kind 'w') and malformed rows (kind 'm') in one schema."""
    windows, malformed = build_branches(raw, cfg)
    return windows.unionByName(malformed)


def build_branches(raw: Any, cfg: dict[str, Any]) -> tuple[Any, Any]:
    """(window rows, malformed rows), both in the output schema."""
    from pyspark.sql import functions as F

    parsed = raw.withColumn("v", F.expr("try_parse_json(raw)")).withColumn("ok", F.expr(well_formed_expr()))

    window = cfg["window"]
    kind = window["type"]
    end_shift = 0
    events = (parsed.where(F.col("ok"))
              .select(F.expr("variant_get(v, '$.key', 'string')").alias("key"),
                      F.expr("variant_get(v, '$.value', 'bigint')").alias("value"),
                      # sent_at is not part of the rule: a non-integer sent_at counts as missing (NULL)
                      F.expr("CASE WHEN schema_of_variant(variant_get(v, '$.sent_at')) = 'BIGINT' "
                             "THEN variant_get(v, '$.sent_at', 'bigint') END").alias("sent_at"),
                      F.expr("timestamp_millis(variant_get(v, '$.event_time', 'bigint'))").alias("ts"))
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
    windows = (events.groupBy(F.col("key"), w.alias("w"))
               .agg(F.count(F.lit(1)).alias("cnt"), F.sum("value").alias("sum"), F.min("value").alias("min"),
                    F.max("value").alias("max"), F.max("sent_at").alias("last_sent_at"))
               .select(F.lit("w").alias("kind"), "key",
                       F.expr("unix_millis(w.start)").alias("window_start"),
                       (F.expr("unix_millis(w.end)") + F.lit(end_shift)).alias("window_end"),
                       "cnt", "sum", "min", "max", "last_sent_at",
                       F.lit(None).cast("int").alias("kafka_partition"),
                       F.lit(None).cast("bigint").alias("kafka_offset"),
                       F.lit(None).cast("string").alias("raw")))
    malformed = (parsed.where(~F.col("ok"))
                 .select(F.lit("m").alias("kind"), F.lit(None).cast("string").alias("key"),
                         *[F.lit(None).cast("bigint").alias(c) for c in
                           ("window_start", "window_end", "cnt", "sum", "min", "max", "last_sent_at")],
                         F.col("kafka_partition").cast("int").alias("kafka_partition"), "kafka_offset",
                         # PostgreSQL text cannot hold NUL characters; a null value (tombstone) is ''
                         F.regexp_replace(F.coalesce(F.col("raw"), F.lit("")), "\u0000", "").alias("raw")))
    return windows, malformed


# -------------------------------------------------------------------------------------------------- the sink


class Sink:
    """Appends a batch's rows to PostgreSQL from the driver, one transaction per batch (COPY into both tables)."""

    def __init__(self, cfg: dict[str, Any], dry_run: bool = False) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.ident = (cfg["load_id"], ENGINE, int(cfg.get("repeat", 0)))
        self._conn: Any = None
        self.lock = threading.Lock()
        self.rows_written = 0
        self.malformed_written = 0
        self.heartbeat_rows = 0
        self.last_ms: dict[str, float] = {}

    def conn(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.cfg["dsn"])
        return self._conn

    def write(self, rows: list[tuple]) -> None:
        """rows: (kind, key, window_start, window_end, cnt, sum, min, max, last_sent_at, partition, offset, raw)."""
        results, malformed = [], []
        for r in rows:
            if r[0] == "m":
                malformed.append((*self.ident, r[9], r[10], r[11]))
            elif r[1] == HEARTBEAT_KEY:
                self.heartbeat_rows += 1
            else:
                results.append((*self.ident, *r[1:9]))
        if self.dry_run or (not results and not malformed):
            return
        with self.lock:
            conn = self.conn()
            with conn.transaction(), conn.cursor() as cur:
                if results:
                    with cur.copy(f"COPY harness_results_log ({', '.join(RESULT_COLUMNS)}) FROM STDIN") as cp:
                        for row in results:
                            cp.write_row(row)
                if malformed:
                    with cur.copy(f"COPY harness_malformed ({', '.join(MALFORMED_COLUMNS)}) FROM STDIN") as cp:
                        for row in malformed:
                            cp.write_row(row)
            self.rows_written += len(results)
            self.malformed_written += len(malformed)

    def foreach_batch(self, df: Any, batch_id: int) -> None:
        t0 = time.perf_counter()
        rows = [tuple(r) for r in df.collect()]
        t1 = time.perf_counter()
        self.write(rows)
        t2 = time.perf_counter()
        self.last_ms = {"batch_id": batch_id, "rows": len(rows), "collect_ms": round((t1 - t0) * 1000, 1),
                        "write_ms": round((t2 - t1) * 1000, 1)}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass


class RowWriter:
    """A ForeachWriter for real-time mode (which refuses foreachBatch): runs in the executors' Python workers."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.sink: Sink | None = None

    def open(self, partition_id: int, epoch_id: int) -> bool:
        self.sink = Sink(self.cfg)
        return True

    def process(self, row: Any) -> None:
        assert self.sink is not None
        self.sink.write([tuple(row)])

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

    records_in counts Kafka offsets (endOffset - startOffset per partition and batch; a batch without a start
    began at offset 0 of the fresh topic). Spark's own numInputRows is kept beside it, but it counts every scan
    of the source, and this query scans each offset range twice (the union of the window branch and the
    malformed branch), so it reports twice the records read.
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
        self.num_input_rows = 0
        self.dropped_by_watermark = 0
        self.offsets: dict[str, int] = {}
        self.latest: dict[str, int] = {}
        self.durations: list[int] = []        # triggerExecution ms of every batch
        self.recent: list[dict[str, Any]] = []
        self.max_state_rows = 0
        self.last: dict[str, Any] = {}
        self.error: str | None = None
        self.warmup: dict[str, Any] = {}

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
                "num_input_rows_total": self.num_input_rows,
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
                "sink": {"rows_written": self.sink.rows_written, "malformed_written": self.sink.malformed_written,
                         "heartbeat_rows_dropped": self.sink.heartbeat_rows},
                "warmup": self.warmup,
                "error": self.error,
            }
        write_atomic(self.path, doc)

    def on_progress(self, p: dict[str, Any]) -> None:
        with self.lock:
            self.batches += 1
            self.num_input_rows += int(p.get("numInputRows") or 0)
            for src in p.get("sources", []):
                start = kafka_offsets(src.get("startOffset"), self.topic)
                end = kafka_offsets(src.get("endOffset"), self.topic)
                if end:
                    self.records_in += sum(o - start.get(part, 0) for part, o in end.items())
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


def warmup_lines(cfg: dict[str, Any], batch: int, base_ms: int) -> list[str]:
    """Records like the load's (every malformed kind, heartbeats), with event times that close windows."""
    w = cfg["window"]
    step = int(w.get("size_ms") or w.get("gap_ms") or 1000) + int(cfg.get("watermark_delay_ms") or 0) + 1
    t0 = base_ms + batch * step
    lines = []
    for i in range(200):
        lines.append(json.dumps({"event_id": i, "key": f"w{i % 40:03d}", "value": i % 1000 + 1,
                                 "event_time": t0 + (i * 7) % step, "pad": "x" * 40, "sent_at": t0 + i}))
    lines.append(json.dumps({"event_id": -1, "key": HEARTBEAT_KEY, "value": 0, "event_time": t0 + step,
                             "sent_at": t0}))
    lines += ['{"event_id":1,"key":"w000","value":1,"event_time":', '{"event_id":1,"key":"w000","value":1}',
              '{"event_id":1,"key":"w000","value":1,"event_time":null}',
              '{"event_id":1,"key":7,"value":1,"event_time":%d}' % t0,
              '{"event_id":1,"key":"w000","value":"1","event_time":%d}' % t0,
              '{"event_id":1,"key":"w000","value":1,"event_time":%d.0}' % t0]
    return lines


def warm_up(spark: Any, cfg: dict[str, Any], progress: Progress) -> None:
    """Run the same query on a few files before the real one, so the JVM's JIT and Spark's code generation
    are warm when the load starts (a cold JVM takes 2-6 s for its first micro-batches, longer than the late
    delay allows). The warm-up sink collects the rows but writes nothing."""
    from pyspark.sql import functions as F

    batches = int(cfg.get("warmup_batches") or 0)
    if batches <= 0:
        return
    t = time.monotonic()
    root = Path(cfg["work_dir"]).resolve() / "warmup"
    inp = root / "input"
    inp.mkdir(parents=True, exist_ok=True)
    base = 1_000_000_000_000
    for b in range(batches):
        (inp / f"part-{b:04d}.txt").write_text("\n".join(warmup_lines(cfg, b, base)) + "\n")
    raw = (spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(inp))
           .select(F.lit(0).alias("kafka_partition"), F.lit(0).cast("bigint").alias("kafka_offset"),
                   F.col("value").alias("raw")))
    sink = Sink(cfg, dry_run=True)
    sink.conn()  # the real sink's connection: open it now, not in the first batch
    progress.sink._conn = sink._conn
    q = (build_output(raw, cfg).writeStream.outputMode(cfg.get("output_mode") or "append")
         .option("checkpointLocation", str(root / "checkpoint"))
         .trigger(availableNow=True).foreachBatch(sink.foreach_batch).start())
    q.awaitTermination(300)
    durations = [int((p.get("durationMs") or {}).get("triggerExecution", 0)) for p in
                 (json.loads(x.json) for x in q.recentProgress)]
    if q.isActive:
        q.stop()
    progress.warmup = {"batches": len(durations), "batch_ms": durations,
                       "seconds": round(time.monotonic() - t, 1), "rows_emitted": sink.heartbeat_rows}
    log(f"warm-up: {len(durations)} batches in {time.monotonic() - t:.1f} s, batch ms {durations}")


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
        "spark.local.dir": str(work / "spark-local"),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.warehouse.dir": str(work / "spark-warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={work / 'derby'}",
    }
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
        out = build_output(kafka_input(spark, cfg), cfg)
        return [writer(out).trigger(processingTime=every).foreachBatch(sink.foreach_batch).start()]
    if kind == "continuous":
        out = build_output(kafka_input(spark, cfg), cfg)
        return [writer(out).trigger(continuous=every).foreach(RowWriter(cfg)).start()]
    if kind == "real_time":
        windows, _ = build_branches(kafka_input(spark, cfg), cfg)
        _, malformed = build_branches(kafka_input(spark, cfg), cfg)
        return [writer(windows, "_windows").trigger(realTime=every).foreach(RowWriter(cfg)).start(),
                writer(malformed, "_malformed").trigger(realTime=every).foreach(RowWriter(cfg)).start()]
    raise ValueError(f"trigger: expected processing_time, real_time or continuous, got {kind!r}")


def error_text(exc: BaseException) -> str:
    """Spark's own message: the first line of a captured exception (its desc), else the last 'Caused by:'."""
    desc = getattr(exc, "desc", None) or getattr(exc, "_desc", None)
    if desc:
        return str(desc).strip()
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
        progress.write(running=False)
        log(f"the query did not start: {exc}")
        spark.stop()
        return 1
    query_id.append(str(queries[0].id))  # the status follows the (window) query
    log(f"query {queries[0].id} started ({cfg.get('master')}, trigger {cfg.get('trigger')}, "
        f"output mode {cfg.get('output_mode', 'append')})")
    code = 0
    while not stop.is_set() and code == 0:
        for query in queries:
            try:
                if query.awaitTermination(0.5 / len(queries)):
                    exc = query.exception()
                    if exc is not None:
                        raise exc
                    log(f"query {query.name} ended")
                    stop.set()
            except Exception as exc:  # awaitTermination raises the query's exception
                progress.error = error_text(exc)
                log(f"query failed: {exc}")
                code = 1
                break
    log("stopping")
    for query in queries:
        try:
            if query.isActive:
                query.stop()
        except Exception as exc:
            log(f"stopping {query.name}: {exc}")
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

"""The Flink engine: one PyFlink Table API / SQL job per load, run as `python job.py CONFIG.json`.

What the query computes:

* reads the load's topic as raw bytes (no JSON format: that would fail the job on text that is not JSON,
  or silently turn bad fields into nulls with `json.ignore-parse-errors`), and decodes them as UTF-8 where
  they are UTF-8: Flink's decoding replaces bytes that are not, which would turn such a record into a valid
  one that the harness's parser refuses, so text that does not encode back to the same bytes is malformed;
* decides for every record, in SQL, whether it is well-formed (the one rule of README "What counts as
  malformed": a JSON object whose `event_id`, `value` and `event_time` are JSON integers and whose `key` is a
  JSON string);
* gives every record a rowtime: its `event_time` when well-formed, epoch 0 otherwise. Per Kafka partition the
  watermark is `max(rowtime) - watermark_delay`, so a malformed record never moves it (epoch 0 is never the
  maximum), and heartbeats (key `__heartbeat__`) do;
* applies the clock rule: a record whose rowtime lies beyond the wall clock plus max_clock_skew is malformed,
  and the watermark expression gives it epoch 0, so it never moves the watermark (source_ddl);
* writes one row per malformed record (partition, offset, text) to `harness_malformed`;
* drops malformed records and heartbeats, assigns the rest to tumbling (TUMBLE), sliding (HOP) or session
  (SESSION ... PARTITION BY key) windows on event time, and per key and window emits, when the watermark
  passes the window's end, count(*), sum/min/max(value) and max(sent_at) with the window bounds as UTC epoch
  milliseconds into `harness_results_log`;
* both INSERTs go through the Flink JDBC connector, append-only (no primary key: every emission is an INSERT;
  the database stamps `inserted_at`), in one job (a statement set).

Modes: "mini" runs the job in a local mini-cluster inside this process's JVM until the process is killed;
"remote" submits it to a standalone session cluster's REST endpoint and stays until killed (SIGTERM/SIGINT
cancel the job) or until the job ends. After submission `metrics_file` gets {"job_id", "rest"} so the harness
can read the job's metrics over Flink's REST API.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, NoReturn

from harness.engines import fair, warmup  # the same defaults and warm-up as every JVM engine's
from harness.records import HEARTBEAT_KEY  # the project is installed in the venv this job runs with
ENGINE = "flink"

# The malformed rule in SQL, with one JSON parse and one regex per evaluation (see NOTES.md):
#
# CANONICAL selects the rule's fields and sent_at with a multi-property JSON path. Flink 2.0.2 returns them
# re-serialised as compact JSON with the keys in sorted order, whatever the input's order, spacing, escapes
# or duplicate keys (the last one wins), and only the keys present, e.g.
#   {"event_id":17,"event_time":1795627300017,"key":"k000042","sent_at":1795627300018,"value":517}
# and NULL for text that is not a JSON object. Values keep their JSON type in that text: 42.0, 42.5, "42",
# true and null stay what they are. One anchored regex (RECORD) over it is the rule; once it matches, the
# layout is fixed and plain string functions read the fields (fields_view_sql).
#
# Rejected: JSON_VALUE returns the same '42' for 42 and "42", and 'true' for true; JSON_VALUE(... RETURNING
# INT) throws ClassCastException on a string at run time (the job fails); RETURNING BIGINT is refused at code
# generation; per-field JSON_QUERY(... WITH ARRAY WRAPPER) is exact ([42] vs ["42"]) but the planner
# repeats every expression at each use (about 34 JSON parses a record). REGEXP_REPLACE takes its replacement
# literally ('$1' is not a group), so a regex cannot repack the fields in one pass.
#
# Deviations, none of which the generator produces: numbers go through BigDecimal, so 2e0 or 1.5E1 would come
# back as 2 and 15; EXPONENT looks for an exponent on the three integer fields in the original text instead
# (a quoted "value" cannot occur inside a JSON string, so only a nested object's "value" in sent_at could be a
# false positive). Integers of more than 18 digits count as malformed (they may not fit BIGINT). Trailing
# text after the object ({...} xyz) is ignored by the JSON functions, where Python's parsers reject it.
CANONICAL = "JSON_QUERY({text}, '$[''event_id'',''event_time'',''key'',''sent_at'',''value'']')"
# The value's text as Flink decodes it (invalid bytes replaced), and the text only where the value is UTF-8
# (NULL for a tombstone, and for bytes that are not UTF-8: malformed either way).
LENIENT_TEXT = "DECODE(raw_value, 'UTF-8')"
UTF8_TEXT = f"CASE WHEN ENCODE({LENIENT_TEXT}, 'UTF-8') = raw_value THEN {LENIENT_TEXT} END"
_INT = r"-?(?:0|[1-9][0-9]{0,17})"
# The one group is event_time. sent_at may be any JSON value: lazily up to the top-level "value", which sorts
# last; a nested "value" inside sent_at cannot end the text with "}" directly after its number.
RECORD = (r'^\{"event_id":' + _INT + r',"event_time":(' + _INT + r'),"key":"[^"\\]*(?:\\.[^"\\]*)*"'
          r'(?:,"sent_at":.*?)?,"value":' + _INT + r'\}$')
EXPONENT = r'"(?:event_id|value|event_time)"\s*:\s*-?[0-9]+(?:\.[0-9]+)?[eE]'
SENT_AT_EXPONENT = r'"sent_at"\s*:\s*-?[0-9]+(?:\.[0-9]+)?[eE]'

# JVM options of the gateway JVM that hosts the mini-cluster (and, in remote mode, only the client): the heap
# cap and collector come from the config (the harness's fair defaults, the same as Spark's driver), these bound
# the rest. JVM_ARGS in the environment wins over all of them.
BOUNDS_JVM_ARGS = "-XX:MaxMetaspaceSize=320m -XX:MaxDirectMemorySize=320m"
# pyflink takes the JVM's --add-opens from env.java.opts.all in $FLINK_CONF_DIR/config.yaml; a FLINK_CONF_DIR
# without them (e.g. a session cluster's own conf) makes the client fail on Java 17 when it adds the connector
# jars to its class loader (InaccessibleObjectException on URLClassLoader.addURL). Always pass them.
JAVA_OPENS = " ".join(f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in (
    "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect", "java.text", "java.time",
    "java.util", "java.util.concurrent", "java.util.concurrent.atomic", "java.util.concurrent.locks"))


# --------------------------------------------------------------------------------------------------- SQL text


def sql_str(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def interval(ms: int) -> str:
    """An exact SQL interval literal for ms milliseconds.

    `INTERVAL 'n' SECOND` is limited to 99 s (SECOND(2)) and Flink rejects SECOND(p) with p > 2 at code
    generation, while DAY(p) TO SECOND(3) covers any size exactly.
    """
    if ms < 0:
        raise ValueError(f"negative interval: {ms} ms")
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    precision = max(2, len(str(days)))
    return (f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' "
            f"DAY({precision}) TO SECOND(3)")


def found(text: str, pattern: str) -> str:
    """TRUE when pattern occurs in text, FALSE otherwise (also for NULL)."""
    # REGEXP, not REGEXP_EXTRACT(...) IS NOT NULL: measured ~3x cheaper on these patterns (Flink 2.0.2).
    return f"COALESCE(REGEXP({text}, '{pattern}'), FALSE)"


def canonical_expr(text: str = "payload") -> str:
    """The canonical text of the rule's fields, or NULL when the record is not a JSON object or has an exponent."""
    # The cheap digit-then-e test first: the exact one is a regex scan of the whole record.
    exponent = f"{found(text, '[0-9][eE]')} AND {found(text, EXPONENT)}"
    return f"CASE WHEN {exponent} THEN CAST(NULL AS STRING) ELSE {CANONICAL.format(text=text)} END"


def rowtime_expr() -> str:
    # Computed columns cannot refer to each other, so the rule is inlined here, as one REGEXP_EXTRACT that both
    # checks it and reads event_time. A malformed record gets epoch 0: a NULL rowtime fails the job, and 0 is
    # never a partition's maximum, so the watermark ignores it. The outer COALESCE: TO_TIMESTAMP_LTZ gives NULL
    # beyond year 9999; such an event lands at epoch 0, i.e. late. The text is the lenient decoding (one DECODE
    # per use instead of the UTF-8 check's three): a record that is JSON but not UTF-8 moves the watermark by
    # the event time it can be read to hold, and is still dropped as malformed below.
    event_time = f"CAST(REGEXP_EXTRACT({canonical_expr(LENIENT_TEXT)}, '{RECORD}', 1) AS BIGINT)"
    return (f"COALESCE(TO_TIMESTAMP_LTZ(COALESCE({event_time}, CAST(0 AS BIGINT)), 3), "
            f"TO_TIMESTAMP_LTZ(CAST(0 AS BIGINT), 3))")


def startup_options(start: Any) -> dict[str, str]:
    if start == "earliest":
        return {"scan.startup.mode": "earliest-offset"}
    if start == "latest":
        return {"scan.startup.mode": "latest-offset"}
    if start == "committed":
        # A group without committed offsets starts at the earliest record instead of failing.
        return {"scan.startup.mode": "group-offsets", "properties.auto.offset.reset": "earliest"}
    if isinstance(start, dict) and isinstance(start.get("timestamp"), int):
        return {"scan.startup.mode": "timestamp", "scan.startup.timestamp-millis": str(start["timestamp"])}
    if isinstance(start, dict) and isinstance(start.get("offsets"), dict):
        return {"scan.startup.mode": "specific-offsets", "scan.startup.specific-offsets": ";".join(
            f"partition:{p},offset:{int(o)}" for p, o in sorted(start["offsets"].items(), key=lambda kv: int(kv[0])))}
    raise ValueError(f"start_offsets: expected earliest, latest, committed, {{'timestamp': ms}} or "
                     f"{{'offsets': {{partition: offset}}}}, got {start!r}")


def with_clause(options: dict[str, str]) -> str:
    return "WITH (\n" + ",\n".join(f"  {sql_str(k)} = {sql_str(v)}" for k, v in options.items()) + "\n)"


def source_ddl(cfg: dict[str, Any]) -> str:
    options = {
        "connector": "kafka",
        "topic": cfg["topic"],
        "properties.bootstrap.servers": cfg["bootstrap"],
        "properties.group.id": f"harness-{cfg['load_id']}",
        "format": "raw",
        **startup_options(cfg.get("start_offsets", "earliest")),
    }
    if cfg.get("bounded"):
        # The warm-up job: read what the topic holds now, then end (the watermark then closes every window).
        options["scan.bounded.mode"] = "latest-offset"
    if not cfg.get("checkpoint_interval_ms"):
        # Without checkpoints the Kafka source commits nothing itself; let the consumer do it so that
        # "committed" means something for a later run of the same group.
        options["properties.enable.auto.commit"] = "true"
    delay = int(cfg.get("watermark_delay_ms") or 0)
    watermark = "rowtime" if delay == 0 else f"rowtime - {interval(delay)}"
    skew = cfg.get("max_clock_skew_ms")
    if skew is not None:
        # The rule's second half: a record beyond the wall clock plus max_clock_skew is malformed, and so must
        # not move the watermark (the generator's watermark is the largest this expression gave; epoch 0 never
        # is). Checked here on the rowtime column instead of inside rowtime_expr, which would parse it again.
        watermark = (f"CASE WHEN rowtime > CURRENT_TIMESTAMP + {interval(int(skew))} "
                     f"THEN TO_TIMESTAMP_LTZ(CAST(0 AS BIGINT), 3) ELSE {watermark} END")
    return f"""CREATE TEMPORARY TABLE events_raw (
  raw_value BYTES,
  kafka_partition INT METADATA FROM 'partition' VIRTUAL,
  kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  rowtime AS {rowtime_expr()},
  WATERMARK FOR rowtime AS {watermark}
) {with_clause(options)}"""


def parsed_view_sql() -> str:
    # CROSS JOIN UNNEST(ARRAY[x]) computes x once per record and hands it on as a column: the planner merges
    # views and projections into one Calc and repeats an expression at every use (no common subexpressions),
    # which would parse the JSON once per field.
    return f"""CREATE TEMPORARY VIEW events_canonical AS
SELECT raw_value, payload, kafka_partition, kafka_offset, rowtime, c.canonical
FROM events_raw
CROSS JOIN UNNEST(ARRAY[{UTF8_TEXT}]) AS t(payload)
CROSS JOIN UNNEST(ARRAY[{canonical_expr()}]) AS c(canonical)"""


def within_skew(cfg: dict[str, Any]) -> str:
    skew = cfg.get("max_clock_skew_ms")
    return "TRUE" if skew is None else f"rowtime <= CURRENT_TIMESTAMP + {interval(int(skew))}"


def fields_view_sql(cfg: dict[str, Any]) -> str:
    # Only read where RECORD matched, i.e. canonical = {"event_id":I,"event_time":I,"key":"...",
    # ["sent_at":any,]"value":I}: event_time is the second comma-separated part (event_id has no comma), value
    # follows the last ':', and ',"key":"' and ',"sent_at":' occur first where RECORD put them (before them
    # come integers only, and a JSON string cannot hold an unescaped quote).
    after_key = "SUBSTRING(canonical FROM POSITION(',\"key\":\"' IN canonical) + 8)"
    sent_at = "SPLIT_INDEX(SUBSTRING(canonical FROM POSITION(',\"sent_at\":' IN canonical) + 11), ',', 0)"
    return f"""CREATE TEMPORARY VIEW events_parsed AS
SELECT
  raw_value, payload, kafka_partition, kafka_offset, rowtime,
  ({found('canonical', RECORD)} AND {within_skew(cfg)}) AS well_formed,
  -- a key with escapes (then canonical has a backslash) is left to JSON_VALUE to unescape
  CASE WHEN POSITION('\\' IN canonical) > 0 THEN JSON_VALUE(payload, '$.key')
       ELSE SPLIT_INDEX({after_key}, '"', 0) END AS `key`,
  TRY_CAST(REPLACE(REVERSE(SPLIT_INDEX(REVERSE(canonical), ':', 0)), '}}', '') AS BIGINT) AS `value`,
  -- sent_at is not part of the rule: without an integer sent_at a record still counts, with NULL here
  CASE WHEN POSITION(',"sent_at":' IN canonical) > 0
        AND CAST(TRY_CAST({sent_at} AS BIGINT) AS STRING) = {sent_at}
        AND NOT ({found('payload', '[0-9][eE]')} AND {found('payload', SENT_AT_EXPONENT)})
       THEN TRY_CAST({sent_at} AS BIGINT) END AS sent_at
FROM events_canonical"""


def events_view_sql() -> str:
    return f"""CREATE TEMPORARY VIEW events AS
SELECT `key`, `value`, sent_at, rowtime
FROM events_parsed
WHERE well_formed AND `key` <> {sql_str(HEARTBEAT_KEY)}"""


def jdbc_sink_ddl(name: str, table: str, columns: str, cfg: dict[str, Any]) -> str:
    if cfg.get("discard"):
        # The warm-up's sink: the same rows, dropped (Flink's built-in blackhole connector).
        return f"CREATE TEMPORARY TABLE {name} (\n{columns}\n) {with_clause({'connector': 'blackhole'})}"
    options = {
        "connector": "jdbc",
        "url": cfg["jdbc_url"],
        "table-name": table,
        "username": cfg.get("jdbc_user") or "harness",
        "password": cfg.get("jdbc_password") or "",
        "sink.buffer-flush.interval": f"{int(cfg.get('sink_flush_interval_ms', 200))} ms",
        "sink.buffer-flush.max-rows": str(int(cfg.get("sink_batch_size", 500))),
    }
    # No PRIMARY KEY: the JDBC sink then runs in append mode and every emitted row is a plain INSERT.
    # inserted_at is not declared, so the INSERT leaves it to the table's clock_timestamp() default.
    return f"CREATE TEMPORARY TABLE {name} (\n{columns}\n) {with_clause(options)}"


RESULT_COLUMNS = """  load_id STRING, engine STRING, `repeat` INT, `key` STRING,
  window_start BIGINT, window_end BIGINT,
  cnt BIGINT, `sum` BIGINT, `min` BIGINT, `max` BIGINT, last_sent_at BIGINT"""

MALFORMED_COLUMNS = """  load_id STRING, engine STRING, `repeat` INT,
  kafka_partition INT, kafka_offset BIGINT, `raw` STRING"""


def window_tvf(window: dict[str, Any]) -> str:
    kind = window.get("type")
    if kind == "tumbling":
        return f"TUMBLE(TABLE events, DESCRIPTOR(rowtime), {interval(int(window['size_ms']))})"
    if kind == "sliding":
        size, slide = int(window["size_ms"]), int(window["slide_ms"])
        if size % slide:
            raise ValueError(f"sliding window: size {size} ms is not a multiple of slide {slide} ms")
        return f"HOP(TABLE events, DESCRIPTOR(rowtime), {interval(slide)}, {interval(size)})"
    if kind == "session":
        # Flink 2.0 supports the SESSION window TVF in streaming; PARTITION BY keeps sessions per key.
        return (f"SESSION(TABLE events PARTITION BY `key`, DESCRIPTOR(rowtime), "
                f"{interval(session_gap(int(window['gap_ms'])))})")
    raise ValueError(f"window.type: expected tumbling, sliding or session, got {kind!r}")


def session_gap(gap_ms: int) -> int:
    """The gap given to Flink for the harness's session rule.

    The harness puts two events of a key in one session when they are less than `gap` apart. Flink merges
    session windows [t, t + gap) that overlap *or touch* (TimeWindow.intersects is inclusive), so events
    exactly `gap` apart end up in one session (seen on Flink 2.0.2). With gap - 1 ms Flink merges exactly
    when t2 - t1 <= gap - 1, i.e. < gap; the window then ends 1 ms early, which results_insert_sql adds back.
    Cost: the session is emitted when the watermark reaches last + gap - 2 instead of last + gap - 1.
    """
    return gap_ms - 1 if gap_ms > 1 else gap_ms


def epoch_ms(ts: str) -> str:
    # window_start/window_end of a TIMESTAMP_LTZ rowtime are TIMESTAMP(3) in table.local-time-zone (UTC here).
    # CAST to BIGINT is refused, UNIX_TIMESTAMP has second resolution and TIMESTAMPDIFF(MILLISECOND, ...)
    # overflows INT, so: whole seconds from EXTRACT(EPOCH) plus the millisecond of the second.
    return f"(EXTRACT(EPOCH FROM {ts}) * 1000 + EXTRACT(MILLISECOND FROM {ts}))"


def results_insert_sql(cfg: dict[str, Any]) -> str:
    window = cfg["window"]
    end_shift = 0
    if window.get("type") == "session":
        end_shift = int(window["gap_ms"]) - session_gap(int(window["gap_ms"]))
    return f"""INSERT INTO results_sink
SELECT
  {sql_str(cfg['load_id'])}, {sql_str(ENGINE)}, CAST({int(cfg.get('repeat', 0))} AS INT), `key`,
  {epoch_ms('window_start')}, {epoch_ms('window_end')} + {end_shift},
  COUNT(*), SUM(`value`), MIN(`value`), MAX(`value`), MAX(sent_at)
FROM TABLE({window_tvf(cfg['window'])})
GROUP BY `key`, window_start, window_end"""


def malformed_insert_sql(cfg: dict[str, Any]) -> str:
    # PostgreSQL text cannot hold NUL characters: strip them so one odd record cannot fail the sink. Text that
    # is not UTF-8 is written as Flink decodes it (a tombstone's is NULL).
    return f"""INSERT INTO malformed_sink
SELECT
  {sql_str(cfg['load_id'])}, {sql_str(ENGINE)}, CAST({int(cfg.get('repeat', 0))} AS INT),
  kafka_partition, kafka_offset, REGEXP_REPLACE(COALESCE(payload, {LENIENT_TEXT}), '\\u0000', '')
FROM events_parsed
WHERE NOT well_formed"""


def statements(cfg: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(DDL to execute, INSERTs for the statement set)."""
    ddl = [
        source_ddl(cfg),
        parsed_view_sql(),
        fields_view_sql(cfg),
        events_view_sql(),
        jdbc_sink_ddl("results_sink", "harness_results_log", RESULT_COLUMNS, cfg),
        jdbc_sink_ddl("malformed_sink", "harness_malformed", MALFORMED_COLUMNS, cfg),
    ]
    return ddl, [results_insert_sql(cfg), malformed_insert_sql(cfg)]


# The temporary objects statements() creates, in an order they can be dropped in.
TEMPORARY_OBJECTS = [("VIEW", "events"), ("VIEW", "events_parsed"), ("VIEW", "events_canonical"),
                     ("TABLE", "events_raw"), ("TABLE", "results_sink"), ("TABLE", "malformed_sink")]


# ------------------------------------------------------------------------------------------------ configuration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flink_config(cfg: dict[str, Any], rest_port: int | None) -> dict[str, str]:
    conf: dict[str, str] = {
        "execution.runtime-mode": "streaming",
        "pipeline.name": f"harness-{cfg['load_id']}",
        "parallelism.default": str(int(cfg.get("parallelism") or 1)),
        # Window bounds are converted to epoch ms through TIMESTAMP: UTC makes that exact on any machine.
        "table.local-time-zone": "UTC",
        "pipeline.jars": ";".join(Path(j).resolve().as_uri() for j in cfg.get("jars", [])),
        # The REST API serves metrics from a cache refreshed at most this often (default 10 s): the harness
        # polls progress (records out, Kafka offsets) and needs fresher numbers. Cluster-side in remote mode.
        "metrics.fetcher.update-interval": "1 s",
        # Checkpoint statistics are cached as long as the web refresh interval (3 s): the harness reads the newest
        # completed checkpoint just before a kill_job and needs it current.
        "rest.cache.checkpoint-statistics.timeout": "100 ms",
    }
    if cfg.get("checkpoint_interval_ms"):
        conf["execution.checkpointing.interval"] = f"{int(cfg['checkpoint_interval_ms'])} ms"
        mode = cfg.get("checkpoint_mode", "exactly_once")
        if mode not in ("exactly_once", "at_least_once"):
            raise ValueError(f"checkpoint_mode: expected exactly_once or at_least_once, got {mode!r}")
        conf["execution.checkpointing.mode"] = mode.upper()
        if cfg.get("checkpoint_dir"):
            # Kept on disk after the job ends however it ends, so a restarted job can restore the newest one.
            conf["execution.checkpointing.dir"] = Path(cfg["checkpoint_dir"]).resolve().as_uri()
            conf["execution.checkpointing.externalized-checkpoint-retention"] = "RETAIN_ON_CANCELLATION"
    if cfg.get("recover_from"):
        conf["execution.state-recovery.path"] = Path(cfg["recover_from"]).resolve().as_uri()
    buffer_timeout = cfg.get("buffer_timeout_ms")
    if buffer_timeout is not None:
        if int(buffer_timeout) < 0:  # Flink 1.x's -1: flush only full buffers
            conf["execution.buffer-timeout.enabled"] = "false"
        else:
            conf["execution.buffer-timeout.interval"] = f"{int(buffer_timeout)} ms"
    if cfg.get("watermark_interval_ms") is not None:
        conf["pipeline.auto-watermark-interval"] = f"{int(cfg['watermark_interval_ms'])} ms"
    if cfg.get("idle_timeout_ms"):
        conf["table.exec.source.idle-timeout"] = f"{int(cfg['idle_timeout_ms'])} ms"

    if cfg.get("mode", "mini") == "remote":
        host, _, port = str(cfg["jobmanager"]).rpartition(":")
        conf.update({"execution.target": "remote", "rest.address": host or "127.0.0.1", "rest.port": port,
                     # a JobManager that does not answer is reported in seconds, not after Flink's 20 attempts
                     # 3 s apart; the status loop below rides out a failed poll by itself
                     "rest.retry.max-attempts": "5", "rest.retry.delay": "1 s"})
    else:
        conf.update({
            "execution.target": "local",
            # The mini-cluster serves Flink's REST API (not the web UI: flink-runtime-web is not shipped).
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": str(rest_port),
            "rest.bind-port": str(rest_port),
            # The mini-cluster's task executor: the job needs little managed (RocksDB/batch) memory and few
            # network buffers at parallelism <= 4; the defaults reserve 128 MB and 64 MB.
            "taskmanager.numberOfTaskSlots": str(max(1, int(cfg.get("parallelism") or 1))),
            "taskmanager.memory.managed.size": "32m",
            "taskmanager.memory.network.min": "32m",
            "taskmanager.memory.network.max": "32m",
        })
    return conf


# ------------------------------------------------------------------------------------------------------ running


def _drain_gateway_stderr() -> None:
    """pyflink starts its JVM with stderr=PIPE and never reads it after start-up: a JVM that writes more than
    a pipe's worth (64 KiB) of stack traces to stderr would block. Copy that stream to our stderr instead."""
    import pyflink.java_gateway as gateway

    launch = gateway.launch_gateway_server_process

    def pump(stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            sys.stderr.buffer.write(line)
            sys.stderr.flush()

    def launch_and_drain(env: dict[str, str], args: list[str]) -> Any:
        proc = launch(env, args)
        if proc.stderr is not None:
            threading.Thread(target=pump, args=(proc.stderr,), name="jvm-stderr", daemon=True).start()
        return proc

    gateway.launch_gateway_server_process = launch_and_drain


def log(msg: str) -> None:
    print(f"[flink-job {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def root_cause(exc: BaseException) -> str:
    """The innermost 'Caused by:' line of a py4j error (the Java stack trace is in the JVM log)."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    causes = [ln for ln in lines if ln.startswith("Caused by:")]
    return causes[-1] if causes else (lines[0] if lines else repr(exc))


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def submit(t_env: Any, cfg: dict[str, Any]) -> Any:
    """Create the config's tables and views and start its INSERTs as one job; the job's TableResult."""
    ddl, inserts = statements(cfg)
    for stmt in ddl:
        t_env.execute_sql(stmt)
    stmt_set = t_env.create_statement_set()
    for stmt in inserts:
        stmt_set.add_insert_sql(stmt)
    return stmt_set.execute()


def wait_port_free(port: int | None, timeout_s: float = 15) -> None:
    """Until nothing listens on port: the warm-up's mini-cluster shuts down after its job ends, and the real
    job's mini-cluster binds the same REST port."""
    if port is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)


def warm_up(t_env: Any, cfg: dict[str, Any], rest_port: int | None) -> dict[str, Any]:
    """The same statements over the warm-up records (harness.engines.warmup, the same as Spark's) as a bounded
    job into discarding sinks, before the real job: the JIT, Flink's generated code and the Kafka client are
    then warm when the load begins. Its objects are dropped afterwards. Without a warm-up topic the job starts
    cold (recorded); a warm-up job that fails fails the job, as the real one would."""
    count = int(cfg.get("warmup_batches") or 0)
    if count <= 0:
        return {"batches": 0}
    t = time.monotonic()
    try:
        topic = warmup.WarmupTopic(cfg["bootstrap"], cfg["topic"], int(cfg.get("partitions") or 1),
                                   warmup.batches(cfg, count))
    except Exception as exc:
        log(f"warm-up: no topic ({exc}); the job starts cold")
        return {"error": f"no warm-up topic: {exc}"}
    out: dict[str, Any] = {"source": f"topic {topic.name}", "batches": count, "records": topic.records}
    try:
        wcfg = {**cfg, "topic": topic.name, "start_offsets": "earliest", "bounded": True, "discard": True,
                "load_id": f"{cfg['load_id']}-warmup", "checkpoint_interval_ms": None}
        result = submit(t_env, wcfg)
        try:
            result.wait(180_000)
        except Exception:
            client = result.get_job_client()
            if client is not None:
                client.cancel().result()
            raise
    except Exception as exc:
        # A job that cannot run over the warm-up records (a JobManager out of reach, a connector missing) cannot
        # run over the load either: fail now rather than wait out the same timeouts a second time.
        log(f"warm-up failed: {root_cause(exc)}")
        raise
    finally:
        for kind, name in TEMPORARY_OBJECTS:
            t_env.execute_sql(f"DROP TEMPORARY {kind} IF EXISTS {name}")
        if (problem := topic.delete()) is not None:
            log(f"warm-up: {problem}")
        wait_port_free(rest_port)
    out["seconds"] = round(time.monotonic() - t, 1)
    log(f"warm-up on {out['source']}: {count} batches, {topic.records} records in {out['seconds']} s")
    return out


def run(cfg: dict[str, Any]) -> int:
    mode = cfg.get("mode", "mini")
    if mode not in ("mini", "remote"):
        raise ValueError(f"mode: expected mini or remote, got {mode!r}")
    rest_port: int | None = None
    if mode == "mini":
        # Without a fixed port the mini-cluster binds a random one that the client API does not reveal;
        # picking a free one here keeps the REST API reachable for the harness either way.
        rest_port = int(cfg["rest_port"]) if cfg.get("rest_port") else free_port()
    metrics_file = Path(cfg["metrics_file"]) if cfg.get("metrics_file") else None

    default_args = f"{cfg.get('jvm_args') or fair.heap_flags(fair.HEAP) + ' ' + fair.COLLECTOR} {BOUNDS_JVM_ARGS}"
    os.environ["JVM_ARGS"] = f"{os.environ.get('JVM_ARGS', default_args)} {JAVA_OPENS}"
    if metrics_file is not None:
        # The JVM's log4j file (flink-*-python-*.log) goes beside the metrics file, not into the venv.
        os.environ.setdefault("FLINK_LOG_DIR", str(metrics_file.parent.resolve()))
    _drain_gateway_stderr()

    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for k, v in flink_config(cfg, rest_port).items():
        conf.set_string(k, v)
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_streaming_mode()
                                    .with_configuration(conf).build())
    # Setting pipeline.jars through the table config also puts the connector jars on the client's class
    # loader, which the planner needs to find the kafka, raw and jdbc factories.
    t_env.get_config().set("pipeline.jars", conf.get_string("pipeline.jars", ""))

    warmed = warm_up(t_env, cfg, rest_port)
    result = submit(t_env, cfg)
    client = result.get_job_client()
    if client is None:
        raise RuntimeError("the statement set did not start a job")
    job_id = str(client.get_job_id())
    rest = f"http://127.0.0.1:{rest_port}" if mode == "mini" else f"http://{cfg['jobmanager']}"
    if metrics_file is not None:
        write_atomic(metrics_file, {"job_id": job_id, "rest": rest, "warmup": warmed})
    log(f"submitted job {job_id} ({mode}), REST {rest}")

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # Poll rather than block in result.wait(): a blocking py4j call would delay our signal handlers until the
    # job ends, and a failed job must end this process (non-zero) so the harness sees it. The execution-result
    # future is what tells the end: in mini mode the mini-cluster shuts down with the job, after which
    # get_job_status() itself throws.
    outcome = client.get_job_execution_result()
    last = ""
    while not stop.wait(1.0):
        if outcome.done():
            try:
                outcome.result()
            except Exception as exc:
                log(f"job {job_id} failed: {root_cause(exc)}")
                return 1
            log(f"job {job_id} finished")
            return 0
        try:
            status = client.get_job_status().result().name
        except Exception:  # ending right now: the next round reads the outcome
            continue
        if status != last:
            log(f"job {job_id}: {status}")
            last = status

    if mode == "remote":
        # The job lives in the session cluster, not here: cancel it so the next run starts from a clean cluster.
        try:
            client.cancel().result()
            log(f"cancelled job {job_id}")
        except Exception as exc:
            log(f"cancelling job {job_id} failed: {exc}")
    return 0


def main(argv: list[str]) -> NoReturn:
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONFIG.json", file=sys.stderr)
        sys.exit(2)
    cfg = json.loads(Path(argv[1]).read_text())
    code = run(cfg)
    # pyflink's py4j threads are not daemons: leave without waiting for them (the JVM ends with us).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv)

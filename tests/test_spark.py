"""Spark beyond local micro-batches (the contract runs cover local mode, every window type, malformed kinds and
late drops): a standalone master, a failed batch replayed after a query restart, and the low-latency modes Spark
is asked about live (it refuses them in 4.2 and the run records a skip in Spark's own words)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest
import yaml

from conftest import scenario_dict
from harness.engines.discovery import validate_settings
from harness.engines.protocol import Plan, Skip
from harness.run import RunOptions, run
from harness.scenario import parse_scenario
from pipelines.spark.engine import SparkEngine, local_cores, pyspark_version
from pipelines.spark.job import FAULT_ENV, error_text, refusal

FAULT_AFTER = 3  # the query fails after the third micro-batch that wrote window rows


def _write(tmp: Path, name: str, **overrides: Any) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(scenario_dict(name=name, **overrides)))
    return p


def _only(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = json.loads((run_dir / "result.json").read_text())
    [e] = doc["engines"]
    return doc, e


@pytest.fixture(scope="module")
def standalone_replay(stack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One run serving three tests: Spark on a standalone Master + Worker the harness starts, with the query made
    to fail once after a batch's rows reached PostgreSQL and restarted from its checkpoint, and later its
    executor killed (kill_worker). No late data: a batch stretched by the lost executor would change which
    events are late (the contract runs cover late drops)."""
    tmp = tmp_path_factory.mktemp("spark-standalone")
    load = {"rate": 300, "keys": 30, "payload_bytes": 120, "heartbeat_interval": "100ms",
            "out_of_order": {"fraction": 0.1, "max_delay": "300ms"}, "malformed_fraction": 0.03}
    path = _write(tmp, "spark-standalone", duration="10s", warmup="2s", topic={"partitions": 3}, load=load,
                  faults=[{"kind": "kill_worker", "at": "6s"}])
    os.environ[FAULT_ENV] = str(FAULT_AFTER)  # the job process inherits it
    try:
        run_dir = run(RunOptions(path, results_dir=tmp / "results", engines=["spark"],
                                 engine_options=["spark.master=standalone", "spark.query_restarts=1"]))
    finally:
        del os.environ[FAULT_ENV]
    doc, e = _only(run_dir)
    yield {"doc": doc, "entry": e, "run_dir": run_dir}


@pytest.mark.stack
def test_standalone_master_runs_exact_and_stops(standalone_replay: dict[str, Any]) -> None:
    e = standalone_replay["entry"]
    assert e["status"] == "complete", e.get("error")
    c = e["windows"]["correctness"]
    assert c["expected"] > 0 and c["exact"] == c["expected"] and c["wrong"] == c["missing"] == c["extra"] == 0
    m = e["engine_metrics"]
    assert m["master"].startswith("spark://127.0.0.1:")
    assert len(m["executors"]) >= 2  # Spark lists the driver and the Worker's executor
    # the job, the driver JVM, Master, Worker and the executor JVM were all measured
    assert e["resources"]["processes_seen"] >= 5
    assert e["malformed"]["counted_by_engine"] == e["malformed"]["sent"] > 0
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if "org.apache.spark.deploy" in " ".join(p.info["cmdline"] or [])]
    assert not left, left


@pytest.mark.stack
def test_replayed_batch_is_seen_as_re_emissions_and_final_stays_exact(standalone_replay: dict[str, Any]) -> None:
    e = standalone_replay["entry"]
    assert e["status"] == "complete", e.get("error")
    [restart] = e["engine_metrics"]["restarts"]
    assert FAULT_ENV in restart["error"] and restart["after_batches"] >= FAULT_AFTER - 1
    w = e["windows"]
    # the replayed batch wrote the same rows again: every re-emission is an exact duplicate of an emission
    assert w["re_emissions"] > 0 and w["duplicates"] == w["re_emissions"]
    assert w["emissions"] == w["correctness"]["expected"] + w["re_emissions"]
    c = w["correctness"]
    assert c["exact"] == c["expected"] and c["wrong"] == c["missing"] == c["extra"] == 0
    assert w["late_events_dropped"] == 0


@pytest.mark.stack
def test_executor_kill_is_replaced_by_the_master_and_the_query_goes_on(standalone_replay: dict[str, Any]) -> None:
    e = standalone_replay["entry"]
    [f] = e["faults"]
    assert f["kind"] == "kill_worker" and f["skipped"] is None and f["error"] is None, f
    assert f["killed_pids"] and f["engine_survived"] is True and f["downtime_ms"] > 0, f
    [kill] = e["engine_metrics"]["worker_kills"]
    assert kill["pids"] == f["killed_pids"] and kill["new_executor_pids"]
    assert not set(kill["new_executor_pids"]) & set(kill["pids"])
    assert kill["batches_after"] > kill["batches_before"]
    # the query survived the lost executor: no restart beyond the one the test's own fault made
    assert len(e["engine_metrics"]["restarts"]) == 1


@pytest.mark.stack
def test_real_time_mode_is_asked_live(stack_dir: Path, tmp_path: Path) -> None:
    """Real-time mode on the tumbling query with 1 Kafka partition and 1 shuffle partition (a core each)."""
    path = _write(tmp_path, "spark-real-time", duration="6s", topic={"partitions": 1})
    run_dir = run(RunOptions(path, results_dir=tmp_path / "results", engines=["spark"], engine_options=[
        "spark.trigger=real_time", "spark.output_mode=update", "spark.shuffle_partitions=1",
        "spark.trigger_interval=5s", "spark.warmup_batches=0"]))
    _, e = _only(run_dir)
    if pyspark_version().startswith(("4.1.", "4.2.")):
        # Spark 4.1/4.2 run stateless queries only in real-time mode: the refusal is Spark's, caught live
        assert e["status"] == "skipped", e.get("error")
        assert "Spark says: [STREAMING_REAL_TIME_MODE" in e["reason"] and "HashAggregateExec" in e["reason"]
        assert e["windows"] is None and e["throughput"] is None  # nothing measured for a query that never ran
    else:  # a Spark that documents aggregations in real-time mode must run the query and be exact
        assert e["status"] == "complete", e.get("error")
        c = e["windows"]["correctness"]
        assert c["exact"] == c["expected"] > 0
    assert not [p for p in psutil.process_iter(["cmdline"]) if run_dir.name in " ".join(p.info["cmdline"] or [])]


# -- pure parts ----------------------------------------------------------------------------------------------


class _Captured(Exception):
    """Shaped like pyspark's captured exceptions: the JVM's message in `desc`."""

    def __init__(self, desc: str) -> None:
        super().__init__(desc)
        self.desc = desc


class AnalysisException(_Captured):
    pass


def test_error_text_reduces_a_failed_query_to_its_cause() -> None:
    stream_failed = _Captured(
        "[STREAM_FAILED] Query [id = 1, runId = 2] terminated with exception: [STREAMING_REAL_TIME_MODE.X] "
        "no. SQLSTATE: 0A000 SQLSTATE: XXKST\n=== Streaming Query ===\nIdentifier: q\n")
    assert error_text(stream_failed) == "[STREAMING_REAL_TIME_MODE.X] no. SQLSTATE: 0A000"
    python_sink = _Captured("[FOREACH_BATCH_USER_FUNCTION_ERROR] Reason: Traceback (most recent call last):\n"
                            "  File \"job.py\", line 1\nRuntimeError: boom\n")
    assert error_text(python_sink) == "[FOREACH_BATCH_USER_FUNCTION_ERROR] Reason: RuntimeError: boom"


def test_refusal_tells_unsupported_from_failed() -> None:
    assert refusal(stream_failed := _Captured(
        "[STREAM_FAILED] Query [id = 1] terminated with exception: [STREAMING_OUTPUT_MODE.UNSUPPORTED_OPERATION] "
        "Invalid streaming output mode: update.")) is not None, stream_failed
    assert refusal(AnalysisException("Continuous processing does not support CollectMetrics operations.;"))
    assert refusal(_Captured("[STREAM_FAILED] Query [id = 1] terminated with exception: [KAFKA_DATA_LOSS] gone")) \
        is None
    assert refusal(RuntimeError("connection refused")) is None


def test_real_time_mode_needs_a_core_per_partition() -> None:
    assert local_cores("local[2]") == 2 and local_cores("local") == 1 and local_cores("spark://h:7077") is None
    settings = validate_settings(SparkEngine, {"trigger": "real_time", "output_mode": "update",
                                               "trigger_interval": "5s", "master": "local[2]"}, "s.yaml")
    three = parse_scenario(scenario_dict(topic={"partitions": 3}))
    skip = SparkEngine().plan(three, settings)
    assert isinstance(skip, Skip) and "3 + 2 = 5" in skip.reason and "local[2] has 2" in skip.reason
    one = parse_scenario(scenario_dict(topic={"partitions": 1}))
    ok = validate_settings(SparkEngine, {"trigger": "real_time", "output_mode": "update", "trigger_interval": "5s",
                                         "master": "local[2]", "shuffle_partitions": 1}, "s.yaml")
    plan = SparkEngine().plan(one, ok)
    assert isinstance(plan, Plan) and plan.capabilities.emits == "updates"  # update mode: partial rows


def test_late_delay_must_clear_a_spark_batch_cycle(tmp_path: Path) -> None:
    """Window 1 s + watermark 0.5 s + heartbeat 0.1 s + 1 s margin = 2.6 s; Spark adds one batch cycle (>= 2 s)."""
    from harness.errors import HarnessError
    from harness.run import plan_engines

    def scenario(delay: str) -> Any:
        return parse_scenario(scenario_dict(load={"rate": 100, "keys": 10, "heartbeat_interval": "100ms",
                                                  "late": {"fraction": 0.05, "delay": delay}}))

    assert [p.name for p in plan_engines(scenario("3s"), "s.yaml", ["flink"], [])] == ["flink"]
    with pytest.raises(HarnessError) as exc:
        plan_engines(scenario("3s"), "s.yaml", ["spark"], [])
    assert "spark's late margin (2s" in exc.value.message and "4600ms" in exc.value.message
    assert plan_engines(scenario("4600ms"), "s.yaml", ["spark"], [])
    with pytest.raises(HarnessError):  # a longer trigger interval is a longer cycle
        plan_engines(scenario("4600ms"), "s.yaml", ["spark"], ["spark.trigger_interval=3s"])

"""Faults on the scenario's schedule (harness/run/faults.py), on the real stack: a stalled sink holds every
engine's writes back for its duration, PostgreSQL and the broker are restarted under a running engine; each run
is still judged (and exact), and the fault is recorded. kill_job is in test_restarts.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conftest import assert_complete_and_exact, scenario_dict
from harness.run import RunOptions, run
from harness.scenario import Scenario


def test_fault_kinds_and_times_are_validated() -> None:
    ok = Scenario.model_validate(scenario_dict(faults=[{"kind": "stall_sink", "at": "1s", "duration": "2s"}]))
    assert ok.faults[0].at == 1000 and ok.faults[0].duration == 2000
    with pytest.raises(ValidationError, match="kill_worker"):      # an unknown kind names the ones there are
        Scenario.model_validate(scenario_dict(faults=[{"kind": "kill_disk", "at": "1s"}]))
    with pytest.raises(ValidationError, match="must fall inside the load"):
        Scenario.model_validate(scenario_dict(faults=[{"kind": "stall_sink", "at": "9s", "duration": "1s"}]))
    with pytest.raises(ValidationError, match="duration of more than 0"):
        Scenario.model_validate(scenario_dict(faults=[{"kind": "stall_sink", "at": "1s", "duration": 0}]))


def faulted_run(tmp_path: Path, fault: dict[str, Any], **scenario: Any) -> tuple[Path, dict[str, Any]]:
    """One run of a scenario with this fault (baseline unless `engines` says otherwise): its folder and result."""
    import yaml

    f = tmp_path / "faulted.yaml"
    f.write_text(yaml.safe_dump(scenario_dict(name=fault["kind"].replace("_", "-"), faults=[fault], **scenario)))
    run_dir = run(RunOptions(f, results_dir=tmp_path / "results",
                             engines=None if "engines" in scenario else ["baseline"]))
    return run_dir, json.loads((run_dir / "result.json").read_text())


@pytest.mark.stack
def test_stalled_sink_delays_results_by_its_duration_and_the_run_stays_exact(stack_dir: Path, tmp_path: Path) -> None:
    run_dir, doc = faulted_run(tmp_path, {"kind": "stall_sink", "at": "2s", "duration": "3s"}, duration="6s")
    [e] = doc["engines"]
    assert_complete_and_exact(e)
    assert e["windows"]["duplicates"] == 0
    [fault] = e["faults"]
    tb = doc["loads"][0]["time_base_ms"]
    assert fault["kind"] == "stall_sink" and fault["error"] is None and fault["planned_at_ms"] == tb + 2000
    assert 0 <= fault["fired_at_ms"] - fault["planned_at_ms"] < 500
    assert 2900 <= fault["ended_at_ms"] - fault["fired_at_ms"] < 3600
    # Windows that closed while the sink was locked reached it only after the lock: their latency holds the
    # stall, far above the unstalled baseline's (well under a second here).
    lat = e["windows"]["event_to_result_ms"]
    assert lat["max"] >= 2500, lat
    # The consumer waits on its INSERT, so it stops reading: the lag rises during the stall, and it recovers.
    lags = [(r["wall_ms"], r["lag"]) for r in e["timeseries"] if r["lag"] is not None]
    before = max(lag for t, lag in lags if t < fault["fired_at_ms"])
    during = max(lag for t, lag in lags if fault["fired_at_ms"] <= t <= fault["ended_at_ms"])
    assert during > 2 * before + 400, (before, during)              # more than a second of load (400/s) behind
    assert fault["recovery_ms"] is not None and fault["recovery_note"] is None, fault
    assert fault["ended_at_ms"] - fault["fired_at_ms"] <= fault["recovery_ms"] < 15_000, fault
    assert fault["first_result_after_ms"] is not None and fault["first_result_after_ms"] >= 2900, fault
    from harness.report import build_report

    build_report(run_dir)
    assert "| Faults injected | stall_sink at +2.0 s for 3.0 s |" in (run_dir / "report.md").read_text()


@pytest.mark.stack
def test_postgres_restart_the_baseline_reconnects_and_stays_exact(stack_dir: Path, tmp_path: Path) -> None:
    _, doc = faulted_run(tmp_path, {"kind": "restart_postgres", "at": "4s", "down_for": "2s"}, duration="10s")
    [e] = doc["engines"]
    c = assert_complete_and_exact(e)
    [fault] = e["faults"]
    assert fault["kind"] == "restart_postgres" and fault["error"] is None, fault
    assert fault["ended_at_ms"] - fault["fired_at_ms"] >= 2000 and "started again" in fault["detail"]
    # windows closed every second while the database was away: the job's writes failed and were made again
    assert e["engine_metrics"]["db_retries"] >= 1, e["engine_metrics"]
    # the monitor lost its connection too and came back: rows_out unknown while away, then counting again
    ts = e["timeseries"]
    away = [s for s in ts if fault["fired_at_ms"] + 500 <= s["wall_ms"] <= fault["ended_at_ms"] - 500]
    assert away and all(s["rows_out"] is None for s in away)
    assert ts[-1]["rows_out"] is not None and ts[-1]["rows_out"] >= c["expected"]
    # PostgreSQL's CPU is one counter across the new postmaster
    pg = [s["postgres_cpu_s"] for s in ts if s["postgres_cpu_s"] is not None]
    assert pg and all(b >= a for a, b in zip(pg, pg[1:])) and e["cpu_during_load"]["postgres_cpu_seconds"] > 0
    assert fault["first_result_after_ms"] is not None and fault["first_result_after_ms"] >= 2000


@pytest.mark.stack
def test_broker_restart_under_flink_loses_nothing_and_says_whether_the_job_survived(stack_dir: Path,
                                                                                    tmp_path: Path) -> None:
    # run() returned (no exception): the harness went on through the broker restart
    _, doc = faulted_run(tmp_path, {"kind": "restart_broker", "at": "4s", "down_for": "2s"}, duration="12s",
                         engines={"flink": {"warmup_batches": 0}})
    [load] = doc["loads"]
    gen = load["generator"]
    [e] = doc["engines"]
    [fault] = e["faults"]
    if not (gen["delivery_errors"] == 0 and gen["events_acked"] == gen["events_sent"] == gen["events_scheduled"]):
        # pytest.fail, not assert: an assertion's message is cut short, and the client's log is the evidence
        pytest.fail(f"the generator lost events across the restart: {gen['events_acked']} acknowledged, "
                    f"{gen['unacknowledged']} never, {gen['delivery_errors']} errors of {gen['events_sent']} sent; "
                    f"fault {fault['detail']}; the producer client's log:\n" + "\n".join(gen["client_log"])
                    + "\nthe broker's warnings and errors since its restart:\n" + _broker_warnings(stack_dir))
    # the producer's own view of the outage reached the result (child process, pipe, document)
    assert any("_ALL_BROKERS_DOWN" in line or "Connection refused" in line for line in gen["client_log"]), gen
    assert fault["kind"] == "restart_broker" and fault["error"] is None and "started again" in fault["detail"], fault
    assert fault["ended_at_ms"] - fault["fired_at_ms"] >= 2000
    assert isinstance(fault["engine_survived"], bool)
    if fault["engine_survived"]:
        assert e["status"] == "complete", e.get("error")
    # the monitor could not read the topic's end while the broker was away: lag unknown, not 0
    away = [s for s in e["timeseries"] if fault["fired_at_ms"] + 500 <= s["wall_ms"] <= fault["ended_at_ms"] - 2500]
    assert away and all(s["lag"] is None for s in away)


def _broker_warnings(stack_dir: Path, keep: int = 40) -> str:
    log = stack_dir / "kafka" / "logs" / "server.log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else [f"({log} not found)"]
    started = max((i for i, line in enumerate(lines) if "Kafka Server started" in line), default=0)
    return "\n".join([line for line in lines[started:] if " WARN " in line or " ERROR " in line][-keep:])


def test_kill_worker_skips_say_why_per_engine_and_mode() -> None:
    """Only a Flink session cluster with checkpoints has a worker the harness kills; every other case is a
    skip with its own reason, never a silent substitute."""
    from harness.engines.discovery import discover, validate_settings
    from harness.run.faults import skip_reason
    from harness.scenario import KillWorker

    fault = KillWorker(at="1s")

    def why(name: str, **settings: Any) -> str | None:
        cls = discover()[name]
        return skip_reason(fault, cls(), validate_settings(cls, settings, "s.yaml"))

    assert "no separate worker" in (why("baseline") or "") and "no separate worker" in (why("batch") or "")
    assert "mode mini" in (why("flink") or "")
    assert "checkpoint_interval" in (why("flink", mode="session") or "")
    assert why("flink", mode="session", checkpoint_interval="2s") is None
    assert "driver's JVM" in (why("spark") or "") and why("spark", master="standalone") is None
    assert "remote cluster" in (why("spark", master="spark://elsewhere:7077") or "")


def test_kill_job_skips_only_clusters_the_harness_does_not_manage() -> None:
    from harness.engines.discovery import discover, validate_settings
    from harness.run.faults import skip_reason
    from harness.scenario import KillJob

    def why(name: str, policy: str = "checkpoint", **settings: Any) -> str | None:
        cls = discover()[name]
        return skip_reason(KillJob(at="1s", restart_policy=policy), cls(), validate_settings(cls, settings, "s.yaml"))

    # a Flink session cluster and a Spark standalone cluster are the harness's own: killed and restarted
    assert why("flink", mode="session", checkpoint_interval="2s") is None
    assert why("spark", master="standalone") is None and why("spark") is None
    assert "does not manage" in (why("flink", mode="remote", jobmanager="elsewhere:8081", checkpoint_interval="2s")
                                 or "")
    assert "does not manage" in (why("spark", master="spark://elsewhere:7077") or "")
    assert "checkpoint_interval" in (why("flink", mode="session") or "")

"""kill_job on the real stack, in one run per engine: every process of the engine gets SIGKILL mid-load, the
harness restarts it under the fault's policy, and the run is judged like any other (the load has no late
data, so an exact final table is the engine's own replay behaviour, not luck)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from conftest import assert_complete_and_exact, scenario_dict
from harness.run import RunOptions, run
from harness.scenario import Scenario
from harness.stack import processes
from pipelines.spark.job import STALL_ENV as SPARK_STALL_ENV

KILL_AT_S = 5


def kill(policy: str, engines: list[str]) -> dict[str, Any]:
    return {"kind": "kill_job", "at": f"{KILL_AT_S}s", "restart_after": "2s", "restart_policy": policy,
            "engines": engines}


def test_kill_job_options_are_validated() -> None:
    ok = Scenario.model_validate(scenario_dict(duration="12s", faults=[kill("earliest", ["baseline"])]))
    assert ok.faults[0].restart_policy == "earliest" and ok.faults[0].restart_after == 2000
    with pytest.raises(ValidationError, match="timestamp"):
        Scenario.model_validate(scenario_dict(faults=[{"kind": "kill_job", "at": "1s", "restart_policy": "timestamp"}]))
    with pytest.raises(ValidationError, match="restart_policy"):
        Scenario.model_validate(scenario_dict(faults=[{"kind": "kill_job", "at": "1s", "restart_policy": "soon"}]))
    with pytest.raises(ValidationError, match="not among the scenario's engines"):
        Scenario.model_validate(scenario_dict(duration="12s", engines={"baseline": {}}, faults=[kill("earliest", ["flink"])]))


@pytest.fixture(scope="module")
def killed_run(stack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("restarts")
    f = tmp / "kill.yaml"
    f.write_text(yaml.safe_dump(scenario_dict(
        name="kill", duration="12s", tuning="low_latency",
        # malformed records too, so each fault's malformed_lost and malformed_rewritten are judged
        load={"rate": 400, "keys": 20, "payload_bytes": 120, "heartbeat_interval": "100ms", "malformed_fraction": 0.02},
        # Spark on a standalone Master and Worker: kill_job kills its driver only, and the cluster stays
        engines={"baseline": {}, "flink": {"checkpoint_interval": "3s"},
                 "spark": {"sink": "idempotent", "master": "standalone"},
                 "batch": {"interval": "2s"}},
        faults=[kill("earliest", ["baseline"]), kill("checkpoint", ["flink", "spark", "batch"]),
                # skipped with the engine's reason, never a silent substitute
                {**kill("committed", ["spark"]), "at": "8s"}])))
    with pytest.MonkeyPatch.context() as mp:
        # Spark's driver stops after its 2nd micro-batch with rows is in PostgreSQL and before Spark commits it,
        # so the kill at 5 s lands between the two and the restarted query replays that batch.
        mp.setenv(SPARK_STALL_ENV, "2")
        run_dir = run(RunOptions(f, results_dir=tmp / "results"))
    return run_dir, json.loads((run_dir / "result.json").read_text())


def engine(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["engines"] if e["engine"] == name)


def fired(e: dict[str, Any]) -> dict[str, Any]:
    [f] = [f for f in e["faults"] if f["fired_at_ms"] is not None]
    return f


@pytest.mark.stack
@pytest.mark.long
@pytest.mark.parametrize("name", ["baseline", "flink", "spark", "batch"])
def test_killed_engine_restarts_and_its_final_table_is_exact(killed_run: tuple[Path, dict[str, Any]], name: str) -> None:
    run_dir, doc = killed_run
    e = engine(doc, name)
    assert_complete_and_exact(e)
    f = fired(e)
    tb = next(ld["time_base_ms"] for ld in doc["loads"] if ld["load_id"] == e["load_id"])
    assert f["error"] is None and 0 <= f["fired_at_ms"] - (tb + KILL_AT_S * 1000) < 1000, f
    assert len(f["killed_pids"]) >= 1 and f["restarted_at_ms"] - f["fired_at_ms"] >= 2000
    assert f["running_again_ms"] > f["restarted_at_ms"] and f["downtime_ms"] == f["running_again_ms"] - f["fired_at_ms"]
    # the restarted engine's processes were in the process registry, and none of the killed ones
    assert f["registered_pids"] and not set(f["registered_pids"]) & set(f["killed_pids"]), f
    if name == "spark":     # the standalone Master and Worker were not killed: still registered beside the new driver
        assert e["engine_metrics"]["master"].startswith("spark://") and len(f["registered_pids"]) >= 3, f
    assert f["first_result_after_ms"] is not None, f
    assert f["first_result_after_ms"] >= f["restarted_at_ms"] - f["fired_at_ms"], f
    # the harness watches one recovery span after the answer is in, so every engine is seen to recover
    assert f["recovery_ms"] is not None and f["recovery_note"] is None, f
    assert f["recovery_ms"] >= f["downtime_ms"]
    assert f["duplicates_after"] == e["windows"]["duplicates"]        # its only fault made all of them
    # and every malformed row written twice was written again after it; none of these restarts loses one
    m = e["malformed"]
    assert m["sent"] > 0 and f["malformed_rewritten"] == m["rows_written"] - m["counted_by_engine"], (m, f)
    assert f["malformed_lost"] is not None and f["malformed_lost"] <= m["sent"] - m["counted_by_engine"], (m, f)
    if name != "spark":     # its listener writes after the batch commits: a kill in between may lose some
        assert f["malformed_lost"] == 0 and m["counted_by_engine"] == m["sent"], (m, f)
    assert not [p for p in processes.registered() if p.get("run_id") == doc["run_id"]]


@pytest.mark.stack
@pytest.mark.long
def test_restart_from_earliest_writes_duplicates(killed_run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = killed_run
    e = engine(doc, "baseline")
    # every window emitted before the kill is emitted again, with the same value: a duplicate, not a change
    assert e["windows"]["duplicates"] > 0 and e["windows"]["duplicates"] == e["windows"]["re_emissions"]
    assert fired(e)["malformed_rewritten"] > 0    # it read the topic again from the start
    assert fired(e)["restart_policy"] == "earliest"


@pytest.mark.stack
@pytest.mark.long
def test_flink_restores_its_newest_checkpoint_and_replays_only_after_it(killed_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, doc = killed_run
    e = engine(doc, "flink")
    [restored] = e["engine_metrics"]["restored_checkpoints"]
    assert e["engine_metrics"]["checkpoints"]["counts"]["restored"] == 1
    assert restored["trigger_ms"] is not None, restored    # read from the REST API just before the kill
    kill_ms = fired(e)["fired_at_ms"]
    assert restored["trigger_ms"] < kill_ms
    # A duplicate is a row the restored job emitted again: its first emission came after the checkpoint it
    # restored was triggered (rows flushed between the barrier and completion are replayed too) and before the kill.
    log = pd.read_csv(run_dir / "raw" / e["load_id"] / "sink_log.csv")
    key = ["key", "window_start", "window_end", "cnt", "sum", "min", "max"]
    first = log.sort_values("inserted_at_ms").groupby(key)["inserted_at_ms"].agg(["min", "count"])
    dup = first[first["count"] > 1]
    assert int((dup["count"] - 1).sum()) == e["windows"]["duplicates"]
    assert ((dup["min"] > restored["trigger_ms"]) & (dup["min"] < kill_ms)).all(), dup


@pytest.mark.stack
@pytest.mark.long
def test_spark_idempotent_sink_writes_a_replayed_batch_once(killed_run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = killed_run
    e = engine(doc, "spark")
    sink = e["engine_metrics"]["sink"]
    # the batch the driver had written but Spark had not committed ran again after the restart, and its rows
    # were not written again: no duplicates, where the append sink writes them twice
    # exactly the one batch the kill caught: a sink that claimed ids twice would skip every batch
    assert sink["mode"] == "idempotent" and sink["replayed_batches_skipped"] == 1, sink
    assert e["windows"]["duplicates"] == 0 and e["windows"]["re_emissions"] == 0


@pytest.mark.stack
@pytest.mark.long
def test_a_policy_the_engine_lacks_is_skipped_with_its_reason(killed_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, doc = killed_run
    skipped = [f for f in engine(doc, "spark")["faults"] if f["restart_policy"] == "committed"]
    assert len(skipped) == 1 and skipped[0]["fired_at_ms"] is None
    assert "commits no consumer-group offsets" in skipped[0]["skipped"]
    from harness.report import build_report

    build_report(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "## Faults" in md and "| baseline #0 | kill_job | earliest |" in md
    assert "skipped: Spark's Kafka source commits no consumer-group offsets" in md


@pytest.mark.stack
@pytest.mark.long
def test_restart_from_latest_is_judged_against_the_answer_it_promises(stack_dir: Path, tmp_path: Path) -> None:
    """latest skips what came in while the engine was down, on purpose: the harness resolves the end offsets at
    the restart, gives them to the engine, and judges the final table against the windows emitted before the
    kill plus ground truth from the records at or after those offsets."""
    f = tmp_path / "latest.yaml"
    f.write_text(yaml.safe_dump(scenario_dict(name="latest", duration="8s", tuning="low_latency",
                                              engines={"baseline": {}},
                                              faults=[{**kill("latest", ["baseline"]), "at": "3s"}])))
    run_dir = run(RunOptions(f, results_dir=tmp_path / "results"))
    doc = json.loads((run_dir / "result.json").read_text())
    e = engine(doc, "baseline")
    c = assert_complete_and_exact(e)          # "complete" waited for the promised answer, not ground truth's
    k = fired(e)
    assert k["restart_policy"] == "latest" and k["error"] is None and k["start_offsets"], k
    raw = run_dir / "raw" / e["load_id"]
    truth = pd.read_csv(raw / "expected_on_time.csv")
    promised = pd.read_csv(raw / "expected_after_restart.csv")
    assert c["expected"] == len(promised)
    # what the policy gave up: events the topic got between the kill and the restart's offsets, and the
    # earlier events of windows open at the kill; a restart can lose events from a window, never add any
    assert sum(int(o) for o in k["start_offsets"].values()) > 0
    both = promised.merge(truth, on=["key", "window_start", "window_end"], how="left", suffixes=("", "_truth"))
    assert both["cnt_truth"].notna().all() and (both["cnt"] <= both["cnt_truth"]).all()
    lost = int(truth["cnt"].sum() - promised["cnt"].sum())
    assert lost > 0, "a restart from latest 2 s after the kill lost no event"
    assert e["windows"]["duplicates"] == 0

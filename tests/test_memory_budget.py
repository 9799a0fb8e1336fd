"""The pre-run memory check (harness.run.memory_budget): a load that cannot fit is refused with exit 2 and the
estimate before anything starts; the event count it rests on is the schedule's."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import yaml

from conftest import run_cli, scenario_dict
from harness.loadgen.schedule import Schedule
from harness.run import memory_budget
from harness.scenario import Scenario


def test_expected_events_match_the_schedule_for_every_shape() -> None:
    for shape in ("constant", {"type": "ramp", "start_rate": 50}, {"type": "step", "factor": 3},
                  {"type": "burst", "factor": 5, "every": "2s", "length": "500ms"}):
        s = Scenario.model_validate(scenario_dict(duration="20s", load={"rate": 400, "keys": 20, "shape": shape}))
        assert abs(memory_budget.expected_events(s) - Schedule.for_scenario(s).count) <= 1, shape


def test_a_load_too_large_for_memory_exits_2_with_the_estimate_and_starts_nothing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(scenario_dict(duration="1h", load={"rate": 10_000_000, "keys": 20})))
    before = {p.pid for p in psutil.process_iter()}
    r = run_cli("run", str(big), "--engines", "baseline", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2, r.stderr
    assert "does not fit in memory" in r.stderr and "36,000,000,000 events" in r.stderr and "GiB" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()                       # no run folder: nothing started
    left = [p for p in psutil.process_iter(["name"]) if p.pid not in before and p.info["name"] == "java"]
    assert not left
    v = run_cli("scenario", "validate", str(big))
    assert v.returncode == 2 and "does not fit in memory" in v.stderr


def test_a_load_that_fits_shows_its_estimate(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(scenario_dict()))
    v = run_cli("scenario", "validate", str(f))
    out = " ".join(v.stdout.split())      # the console wraps at its width, which the path's length moves
    assert v.returncode == 0 and "1600 events" in out and "memory in the harness about" in out, v.stdout


def test_rate_above_the_measured_generator_ceiling_warns(tmp_path: Path) -> None:
    s = Scenario.model_validate(scenario_dict(load={"rate": 400, "keys": 20, "shape": {"type": "step", "factor": 3}}))
    assert memory_budget.rate_warning(s, tmp_path) is None      # nothing measured: no warning
    (tmp_path / "bench-producer-20261203T000000.json").write_text(json.dumps({"throughput": [
        {"producer": "harness generator (confluent-kafka, builds + encodes each event)", "records_per_s": 1000.0}]}))
    warning = memory_budget.rate_warning(s, tmp_path)
    assert warning is not None and "1,200 events/s" in warning and "1,000 events/s" in warning
    ok = Scenario.model_validate(scenario_dict(load={"rate": 400, "keys": 20}))
    assert memory_budget.rate_warning(ok, tmp_path) is None

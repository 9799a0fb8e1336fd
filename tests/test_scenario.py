"""Scenario parsing: every bad field exits 2 with a message naming it; shipped scenarios validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, run_cli, scenario_dict
from harness.durations import parse_duration
from harness.errors import HarnessError
from harness.scenario import parse_scenario


@pytest.mark.parametrize("text,ms", [("500ms", 500), ("10s", 10_000), ("1.5m", 90_000), ("1h", 3_600_000), (0, 0)])
def test_durations(text: Any, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["10", 10, "ten seconds", "1.0005s", True, "-1s"])
def test_bad_durations(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def _with(path: str, value: Any) -> dict[str, Any]:
    d = scenario_dict()
    d = yaml.safe_load(yaml.safe_dump(d))  # deep copy
    node = d
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    if value is DELETE:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return d


DELETE = object()

BAD_FIELDS = [
    ("name", "has spaces", "name"),
    ("nme", "x", "nme"),
    ("duration", "10", "duration"),
    ("duration", DELETE, "duration"),
    ("warmup", "10s", "warmup"),
    ("seed", -1, "seed"),
    ("topic.partitions", 0, "topic.partitions"),
    ("topic.replicas", 3, "topic.replicas"),
    ("load.rate", -5, "load.rate"),
    ("load.rate", "fast", "load.rate"),
    ("load.shape", "sawtooth", "shape"),
    ("load.shape", {"type": "burst", "every": "1s", "length": "2s"}, "burst length"),
    ("load.shape", {"type": "ramp", "slope": 3}, "load.shape.slope"),
    ("load.keys", 0, "load.keys"),
    ("load.key_distribution", "normal", "load.key_distribution"),
    ("load.zipf_s", 0, "load.zipf_s"),
    ("load.payload_bytes", -1, "load.payload_bytes"),
    ("load.malformed_fraction", 1.5, "load.malformed_fraction"),
    ("load.out_of_order", {"fraction": 0.1}, "max_delay"),
    ("load.out_of_order", {"fraction": 0.1, "max_delay": "2s"}, "watermark_delay"),
    ("load.late", {"fraction": 0.6, "delay": "1s"}, "too short"),
    ("load.heartbeat_interval", "0ms", "heartbeat_interval"),
    ("load.colour", "red", "load.colour"),
    ("query.window", {"type": "hopping", "size": "1s"}, "query.window.type"),
    ("query.window", {"type": "tumbling"}, "needs size"),
    ("query.window", {"type": "tumbling", "size": "1s", "gap": "1s"}, "remove gap"),
    ("query.window", {"type": "sliding", "size": "10s", "slide": "3s"}, "whole multiple"),
    ("query.window", {"type": "session"}, "needs gap"),
    ("query.watermark_delay", "soon", "query.watermark_delay"),
    ("engines", ["flink"], "engines"),
    ("slo.p99_latency", "fast", "slo.p99_latency"),
    ("slo.max_duplicates", -1, "slo.max_duplicates"),
    ("slo.unknown_slo", 1, "slo.unknown_slo"),
]


@pytest.mark.parametrize("path,value,named", BAD_FIELDS, ids=[f"{p}={v}" for p, v, _ in BAD_FIELDS])
def test_bad_field_is_named(path: str, value: Any, named: str) -> None:
    with pytest.raises(HarnessError) as exc:
        parse_scenario(_with(path, value), "bad.yaml")
    assert exc.value.exit_code == 2
    assert "bad.yaml" in exc.value.message and named in exc.value.message


def test_late_delay_too_short_for_window_is_refused() -> None:
    d = _with("load.late", {"fraction": 0.01, "delay": "2s"})
    with pytest.raises(HarnessError) as exc:
        parse_scenario(d, "late.yaml")
    msg = exc.value.message
    assert "load.late.delay" in msg and "too short" in msg and "2600ms" in msg  # 1s + 500ms + 0 + 100ms + 1s


def test_fractions_are_shares_of_one_load() -> None:
    d = _with("load.late", {"fraction": 0.6, "delay": "10s"})
    d["load"]["malformed_fraction"] = 0.5
    with pytest.raises(HarnessError) as exc:
        parse_scenario(d, "f.yaml")
    assert "at most 1" in exc.value.message and "malformed_fraction" in exc.value.message


def test_session_with_late_data_is_refused_with_reason() -> None:
    d = _with("query.window", {"type": "session", "gap": "1s"})
    d["load"]["late"] = {"fraction": 0.01, "delay": "30s"}
    with pytest.raises(HarnessError) as exc:
        parse_scenario(d, "s.yaml")
    assert "session" in exc.value.message and "no single right answer" in exc.value.message


def test_shape_by_name_and_defaults() -> None:
    s = parse_scenario(_with("load.shape", "burst"))
    assert s.load.shape.type == "burst" and s.load.shape.factor == 5.0  # type: ignore[union-attr]


def test_engine_sections_are_free_form_here() -> None:
    s = parse_scenario(_with("engines", {"anything": {"x": 1}, "other": None}))
    assert s.engines == {"anything": {"x": 1}, "other": {}}


def test_shipped_scenarios_validate() -> None:
    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    assert len(files) >= 5
    r = run_cli("scenario", "validate", *map(str, files))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ok ") == len(files)


def test_cli_bad_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with("load.rate", 0)))
    r = run_cli("run", str(bad))
    assert r.returncode == 2
    assert "bad.yaml" in r.stderr and "load.rate" in r.stderr
    missing = run_cli("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    r = run_cli("scenario", "validate", str(broken))
    assert r.returncode == 2 and "not valid YAML" in r.stderr

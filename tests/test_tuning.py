"""Fair defaults (harness.engines.fair) and the scenario's `tuning`, as planning resolves them: pure, no services."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.engines import fair, warmup
from harness.run.planning import plan_engines
from harness.scenario import Scenario, load_scenario
from pipelines.spark.engine import local_cores

ROOT = Path(__file__).resolve().parent.parent


def quick(**changes: object) -> Scenario:
    base = load_scenario(ROOT / "scenarios" / "quick.yaml").model_dump(mode="json")
    return Scenario.model_validate({**base, **changes})


def planned(s: Scenario, options: list[str] | None = None) -> dict[str, object]:
    return {p.name: p for p in plan_engines(s, "s.yaml", ["flink", "spark"], options or [])}


def test_low_latency_sets_each_engines_declared_values_and_shows_them_as_tuned() -> None:
    p = planned(quick(tuning="low_latency", engines={}))
    flink, spark = p["flink"], p["spark"]
    assert flink.settings.sink_flush_interval == 200 and spark.settings.trigger_interval == 200
    assert flink.tuned_settings == {"sink_flush_interval": "200ms"} and spark.tuned_settings == {"trigger_interval": "200ms"}
    assert flink.changed_settings == {} and spark.changed_settings == {}


def test_defaults_are_the_upstream_engines_own() -> None:
    p = planned(quick(tuning="defaults", engines={}))
    assert p["flink"].settings.sink_flush_interval == 1000   # Flink's JDBC sink: 1 s
    assert p["spark"].settings.trigger_interval == 0         # Spark: micro-batches back to back
    assert p["flink"].tuned_settings == {} and p["spark"].tuned_settings == {}


def test_an_explicit_setting_wins_over_the_tuning_and_is_shown_as_changed() -> None:
    p = planned(quick(tuning="low_latency", engines={"flink": {"sink_flush_interval": "500ms"}}),
                ["spark.trigger_interval=1s"])
    assert p["flink"].settings.sink_flush_interval == 500 and p["flink"].changed_settings == {"sink_flush_interval": "500ms"}
    assert p["flink"].tuned_settings == {}
    assert p["spark"].settings.trigger_interval == 1000 and p["spark"].changed_settings == {"trigger_interval": "1s"}


def test_jvm_engines_get_the_same_slots_heap_and_warm_up_by_default() -> None:
    p = planned(quick(engines={}))
    flink, spark = p["flink"].settings, p["spark"].settings
    assert flink.parallelism == local_cores(spark.master) == fair.SLOTS
    assert flink.heap == spark.driver_memory == fair.HEAP
    assert flink.warmup_batches == spark.warmup_batches == fair.WARMUP_BATCHES > 0


def test_shipped_scenarios_use_tuning_instead_of_their_own_emission_overrides() -> None:
    emission = {"sink_flush_interval", "trigger_interval", "buffer_timeout"}
    for f in sorted((ROOT / "scenarios").glob("*.yaml")):
        raw = yaml.safe_load(f.read_text())
        assert raw.get("tuning") == "low_latency", f.name
        for name, s in (raw.get("engines") or {}).items():
            assert not emission & set(s or {}), f"{f.name}: engines.{name} sets {emission & set(s or {})}"


def test_warm_up_batches_are_the_same_records_for_every_engine_and_close_a_window_each() -> None:
    cfg = {"window": {"type": "tumbling", "size_ms": 5000}, "watermark_delay_ms": 2000}
    a, b = warmup.batches(cfg, 3), warmup.batches(dict(cfg), 3)
    assert a == b and len(a) == 3
    import json

    for i, batch in enumerate(a):
        events = [json.loads(x) for x in batch if x.startswith("{") and x.endswith("}")]
        heartbeat = [e for e in events if e["event_id"] == -1]
        assert len(heartbeat) == 1
        latest = max(e["event_time"] for e in events if e["event_id"] >= 0 and isinstance(e["key"], str)
                     and isinstance(e.get("event_time"), int))
        # the heartbeat is at least a window plus the watermark delay after every event of its batch
        assert heartbeat[0]["event_time"] - latest > 0 and heartbeat[0]["event_time"] >= warmup.BASE_MS + (i + 1) * 7001

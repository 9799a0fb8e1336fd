"""Records a day ahead with the clock-skew rule off (query.max_clock_skew: none): the damage is real engine
behaviour and is judged, not left to time out. One run of the baseline (the minimum over partitions) and Spark
(the maximum) serves every assertion; scenarios/far-future.yaml runs all four engines. With the rule on, the
same records are malformed and harmless: tests/test_engine_contract.py (tumbling) checks that on every engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, scenario_dict
from harness.run import RunOptions, run


@pytest.fixture(scope="module")
def rule_off_run(stack_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import yaml

    from harness import results

    tmp = tmp_path_factory.mktemp("far-future")
    shipped = yaml.safe_load((ROOT / "scenarios" / "far-future.yaml").read_text())
    d = scenario_dict(name="far-future-test", duration="12s", topic=shipped["topic"],
                      load={**shipped["load"], "rate": 300,
                            "bad_input": {"far_future": [{"at": "4s", "partitions": "one"},
                                                         {"at": "8s", "partitions": "all"}]}},
                      query=shipped["query"], tuning="low_latency", engines={"baseline": {}, "spark": {}})
    f = tmp / "far-future.yaml"
    f.write_text(yaml.safe_dump(d))
    run_dir = run(RunOptions(f, results_dir=tmp / "results", engines=["baseline", "spark"]))
    doc = results.load(run_dir)
    return {"doc": doc, "by": {e.engine: e for e in doc.engines}, "run_dir": run_dir}


@pytest.mark.stack
def test_rule_off_damage_is_judged_per_engine_and_variant(rule_off_run: dict[str, Any]) -> None:
    by = rule_off_run["by"]
    for name in ("baseline", "spark"):
        e = by[name]
        # judged as it stands: the sink went quiet with windows missing (or, for the baseline's one-partition
        # plant, nothing lost until the second plant), never a timeout
        assert e.status in ("settled", "complete"), (name, e.status, e.error)
        assert e.windows is not None and e.malformed is not None
        k = e.malformed.by_kind["far_future"]
        assert k.in_topic == 1 + 3 and k.counted_as_malformed == 0, k   # the rule is off: read as events
    base = {d.partitions: d for d in by["baseline"].malformed.far_future}
    spark = {d.partitions: d for d in by["spark"].malformed.far_future}
    # the baseline's watermark is the minimum over partitions: one partition ahead harms nothing, all of
    # them send it a day ahead and (nearly) every window after is lost or cut short
    assert base["one"].windows_after > 0 and base["one"].windows_not_exact_after == 0, base
    assert base["all"].windows_not_exact_after >= 0.8 * base["all"].windows_after > 0, base
    # Spark's is the maximum: the first record already moves it a day ahead
    assert spark["one"].windows_not_exact_after >= 0.8 * spark["one"].windows_after > 0, spark
    assert by["spark"].windows.correctness.missing > by["baseline"].windows.correctness.missing, (
        by["spark"].windows.correctness, by["baseline"].windows.correctness)


@pytest.mark.stack
def test_rule_off_report_shows_the_damage(rule_off_run: dict[str, Any]) -> None:
    from harness.report import build_report

    run_dir = rule_off_run["run_dir"]
    build_report(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "## Bad input" in md and "max_clock_skew none" in md, md[:2000]
    lines = md.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("| +4 s |"))
    header = next(lines[i] for i in range(at, 0, -1) if lines[i].startswith("| planted |"))
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in lines[at].strip("|").split("|")]))
    assert cells["records"] == "1 (one partition)", cells
    assert cells["baseline #0"].startswith("0 of") and not cells["spark #0"].startswith("0 of"), cells

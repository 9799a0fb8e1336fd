"""The result document: the schema file matches the model, an older result is upgraded, what is not a result
(or is from an unknown version) is refused with exit 2, a partial result validates, and a run whose PostgreSQL
cannot be reached still leaves result.json and both reports."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import ROOT, run_cli, scenario_dict
from harness import results
from harness.errors import HarnessError
from harness.results.document import SCHEMA_VERSION, EngineResult, ResultDocument, json_schema
from harness.results.migrations import READABLE
from harness.scenario import load_scenario

V1 = ROOT / "tests" / "fixtures" / "result-v1.json"   # written by the harness before the typed document


def _write(folder: Path, doc: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return folder


def test_schema_file_is_the_models_export() -> None:
    committed = json.loads((ROOT / "docs" / "result-schema.json").read_text())
    assert committed == json_schema(), "docs/result-schema.json is stale: run `harness schema -o docs/result-schema.json`"
    assert committed["$id"].endswith(f"/v{SCHEMA_VERSION}")


def test_v1_result_is_upgraded(tmp_path: Path) -> None:
    raw = json.loads(V1.read_text())
    assert raw["schema_version"] == 1 and "spark" in raw["versions"]
    doc = results.load(_write(tmp_path / "old", raw))
    assert doc.schema_version == SCHEMA_VERSION == 7
    assert doc.versions is not None and doc.versions.engines["spark"]["pyspark"] == raw["versions"]["spark"]["pyspark"]
    assert doc.versions.harness == raw["versions"]["harness"]
    [b, s] = doc.engines
    assert (b.engine, s.engine) == ("baseline", "spark")
    assert b.windows is not None and b.windows.event_to_result_ms.p99 == raw["engines"][0]["windows"]["event_to_result_ms"]["p99"]
    assert b.windows.event_to_result_ms.at("p99.9") == raw["engines"][0]["windows"]["event_to_result_ms"]["p99.9"]
    # before schema 4 the latency started at the hand-off: moved there, and the headline figure says so
    assert b.windows.event_to_result_from == "handoff"
    assert b.windows.event_to_result_handoff_ms == b.windows.event_to_result_ms
    assert b.throughput is not None and b.throughput.in_vs_acked == raw["engines"][0]["throughput"]["in_vs_acked"]
    assert doc.loads[0].timeseries.sent_per_second[0] == raw["loads"][0]["timeseries"]["sent_per_second"]["0"]
    # the upgraded document is a valid current one: dumped and read again it stays the same
    again = ResultDocument.model_validate(json.loads(json.dumps(doc.dump())))
    assert again == doc
    # and a report builds from the old folder
    r = run_cli("report", str(tmp_path / "old"))
    assert r.returncode == 0, r.stderr
    assert "Decision" in (tmp_path / "old" / "report.md").read_text()


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, "2"])
def test_unknown_version_is_refused_naming_it(tmp_path: Path, version: object) -> None:
    raw = json.loads(V1.read_text())
    raw["schema_version"] = version
    with pytest.raises(HarnessError) as exc:
        results.load(_write(tmp_path / "v", raw))
    msg = exc.value.message
    assert f"version {version!r}" in msg and ", ".join(map(str, READABLE)) in msg, msg
    r = run_cli("report", str(tmp_path / "v"))
    assert r.returncode == 2 and "cannot be read by this harness" in r.stderr


@pytest.mark.parametrize("content,expected", [
    (V1.read_text()[:5000], "broken or cut short"),
    ('{"name": "quick", "duration": "30s"}', "not a result document"),
    ("[1, 2, 3]", "not a result document"),
], ids=["truncated", "foreign-object", "foreign-list"])
def test_report_on_what_is_not_a_result_exits_2(tmp_path: Path, content: str, expected: str) -> None:
    for target in (_write(tmp_path / "run", content), tmp_path / "run" / "result.json"):
        r = run_cli("report", str(target))
        assert r.returncode == 2, r.stdout + r.stderr
        assert expected in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run" / "report.html").exists()


def test_wrong_field_names_its_place(tmp_path: Path) -> None:
    raw = json.loads(V1.read_text())
    raw["engines"][1]["windows"]["correctness"]["exact"] = "all of them"
    raw["engines"][0]["surprise"] = 1
    with pytest.raises(HarnessError) as exc:
        results.load(_write(tmp_path / "bad", raw))
    assert "engines.1.windows.correctness.exact" in exc.value.message
    assert "engines.0.surprise: Extra inputs are not permitted" in exc.value.message


def test_partial_document_of_a_killed_run_validates() -> None:
    scen = load_scenario(ROOT / "scenarios" / "quick.yaml")
    doc = ResultDocument(run_id="r", status="running", started_at="2026-12-02T00:00:00.000+00:00",
                         scenario_file="scenarios/quick.yaml", scenario=scen, engines_requested=["baseline"])
    raw = json.loads(V1.read_text())
    doc.engines.append(EngineResult.model_validate(
        {k: raw["engines"][0][k] for k in ("engine", "display_name", "repeat", "load_id", "capabilities")}
        | {"status": "starting"}))
    back = ResultDocument.model_validate(json.loads(json.dumps(doc.dump())))
    assert back == doc and back.engines[0].windows is None and back.loads == []
    with pytest.raises(ValidationError):
        doc.engines[0].status = "finished"  # type: ignore[assignment]  # not an engine status


@pytest.mark.stack
def test_run_whose_postgres_is_unreachable_leaves_result_and_reports(stack_dir: Path, tmp_path: Path) -> None:
    import yaml

    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict()))
    # a port nothing listens on: the services' probe fails before any engine starts
    r = run_cli("run", str(scen), "--engines", "baseline", "--results-dir", str(tmp_path / "r"),
                "--postgres-dsn", "postgresql://harness@127.0.0.1:9/harness")
    assert r.returncode != 0
    [run_dir] = list((tmp_path / "r").iterdir())
    doc = results.load(run_dir)
    assert doc.status == "failed" and doc.error and "127.0.0.1:9" in doc.error, doc.error
    assert doc.engines == [] and doc.loads == []
    md, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    assert "INCOMPLETE" in md and "INCOMPLETE" in html
    assert doc.error.splitlines()[0][:60] in md


def test_frames_from_the_fixture(tmp_path: Path) -> None:
    raw = copy.deepcopy(json.loads(V1.read_text()))
    f = results.frames(_write(tmp_path / "old", raw))
    assert list(f.runs["engine"]) == ["baseline", "spark"]
    assert list(f.runs["latency_p99_ms"]) == [e["windows"]["event_to_result_ms"]["p99"] for e in raw["engines"]]
    assert len(f.timeseries) == 6 and f.windows.empty  # no raw/ folder beside this result
    assert list(f.loads.columns) == ["load_id", "engine", "repeat", "second", "intended", "sent", "acked"]

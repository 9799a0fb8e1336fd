"""The runner through the CLI: bad engine input exits 2 before anything starts; skips carry a reason;
Ctrl-C or SIGTERM keeps what was measured and leaves no process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import ROOT, run_cli, scenario_dict

pytestmark = pytest.mark.stack


def _file(tmp: Path, **over: object) -> Path:
    p = tmp / "s.yaml"
    p.write_text(yaml.safe_dump(scenario_dict(**over)))
    return p


def test_unknown_engine_exits_2(tmp_path: Path) -> None:
    r = run_cli("run", str(_file(tmp_path)), "--engines", "storm", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "unknown engine 'storm'" in r.stderr and "flink" in r.stderr
    assert not (tmp_path / "r").exists()


def test_bad_engine_setting_exits_2(tmp_path: Path) -> None:
    r = run_cli("run", str(_file(tmp_path)), "--engines", "flink", "-o", "flink.parallelism=zero",
                "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "engines.flink.parallelism" in r.stderr
    r = run_cli("run", str(_file(tmp_path)), "-o", "flink-parallelism", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "NAME.KEY=VALUE" in r.stderr


def test_engine_that_cannot_run_is_skipped_with_reason(stack_dir: Path, tmp_path: Path) -> None:
    q = {"window": {"type": "tumbling", "size": "1s"}, "watermark_delay": "500ms", "allowed_lateness": "1s"}
    r = run_cli("run", str(_file(tmp_path, query=q)), "--engines", "flink,baseline", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    [run_dir] = list((tmp_path / "r").iterdir())
    doc = json.loads((run_dir / "result.json").read_text())
    assert [e["status"] for e in doc["engines"]] == ["skipped", "skipped"]
    assert "allowed lateness" in doc["engines"][0]["reason"] and "allowed lateness" in doc["engines"][1]["reason"]


def _engine_processes(run_id_part: str) -> list[list[str]]:
    return [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if run_id_part in " ".join(p.info["cmdline"] or [])]


@pytest.mark.parametrize("sig,code,mid_restart", [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, False),
                                                  (signal.SIGTERM, 143, True)],
                         ids=["ctrl-c", "sigterm", "sigterm-mid-restart"])
def test_interrupt_keeps_measurements_and_leaves_no_process(stack_dir: Path, tmp_path: Path, sig: int,
                                                            code: int, mid_restart: bool) -> None:
    # mid_restart: a kill_job fault at +2 s whose restart is 30 s away; the signal comes while the engine is down
    faults = ([{"kind": "kill_job", "at": "2s", "restart_after": "30s", "restart_policy": "earliest"}] if mid_restart
              else None)
    scen = _file(tmp_path, name="interrupted", duration="60s", **({"faults": faults} if faults else {}))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scen), "--engines", "baseline",
                             "--results-dir", str(tmp_path / "r")], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell without job control starts background jobs with SIGINT ignored, and
                            # Python then installs no KeyboardInterrupt handler: give the CLI a terminal's Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Interrupt once the engine has read a second and a half of the load (400 events/s), as its own status file
    # says: the monitor, which samples every 0.5 s, has then recorded reading at least once.
    try:
        deadline = time.monotonic() + 90
        status: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "r").glob("*/engines/baseline-0/status.json"))
            try:
                status = json.loads(found[0].read_text()) if found else {}
            except ValueError:  # never half-written (it is replaced whole), but do not let a read race fail the test
                status = {}
            if status.get("records_in", 0) >= 600:
                break
            time.sleep(0.1)
        assert status.get("records_in", 0) >= 600, (status, proc.poll())
        if mid_restart:          # the job killed: none of the run's processes is left but the harness itself
            run_id = found[0].parent.parent.parent.name
            while time.monotonic() < deadline and _engine_processes(run_id):
                time.sleep(0.1)
            assert not _engine_processes(run_id) and proc.poll() is None
            time.sleep(0.5)
    except BaseException:
        proc.terminate()  # never leave the run going: SIGTERM stops its engine too
        try:
            proc.communicate(timeout=120)
        finally:
            proc.kill()
        raise
    [result] = list((tmp_path / "r").glob("*/result.json"))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    doc = json.loads(result.read_text())
    assert doc["status"] == "interrupted"
    [e] = doc["engines"]
    assert e["status"] == "interrupted" and e["timeseries"], e.keys()
    assert any(r["records_in"] for r in e["timeseries"])
    if mid_restart:
        [f] = e["faults"]
        assert f["fired_at_ms"] and f["killed_pids"] and f["restarted_at_ms"] is None, f
        assert "ended before the restart" in (f["detail"] or ""), f
    report = result.parent / "report.html"  # an interrupted run still gets its report, marked incomplete
    assert report.exists() and "INCOMPLETE" in report.read_text()
    assert not _engine_processes(doc["run_id"])

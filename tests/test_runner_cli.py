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


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_interrupt_keeps_measurements_and_leaves_no_process(stack_dir: Path, tmp_path: Path, sig: int,
                                                            code: int) -> None:
    scen = _file(tmp_path, name="interrupted", duration="60s")
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
    report = result.parent / "report.html"  # an interrupted run still gets its report, marked incomplete
    assert report.exists() and "INCOMPLETE" in report.read_text()
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if doc["run_id"] in " ".join(p.info["cmdline"] or [])]
    assert not left

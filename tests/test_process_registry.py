"""A harness killed with SIGKILL mid-run leaves its engines running; `harness stack down` stops every one of
them, found through the process registry.

The killed run uses the session stack's Kafka and PostgreSQL as external services, with a private stack folder
(HARNESS_STACK_DIR): its registry lives there, and `harness stack down` on that folder stops the registered
processes without stopping the session stack (whose embedded services are not in that folder). This is also
`stack down` when the embedded stack is not running.
"""

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

from conftest import ROOT, current_svc, run_cli, scenario_dict

pytestmark = pytest.mark.stack


def _entries(registry: Path) -> list[dict]:
    out = []
    for f in registry.glob("*.json"):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass  # being written
    return out


def _same(pid: int, created: float) -> psutil.Process | None:
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - created) < 0.05 and p.status() != psutil.STATUS_ZOMBIE:
            return p
    except psutil.NoSuchProcess:
        pass
    return None


def test_stack_down_after_sigkill_leaves_nothing(stack_dir: Path, tmp_path: Path) -> None:
    svc = current_svc(stack_dir)
    own_stack = tmp_path / "stack"
    results = tmp_path / "results"
    env = {**os.environ, "HARNESS_STACK_DIR": str(own_stack), "HARNESS_BOOTSTRAP_SERVERS": svc.bootstrap,
           "HARNESS_POSTGRES_DSN": svc.dsn}
    scen = tmp_path / "killed.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(name="killed", duration="4s",
                                                 engines={"baseline": {}, "flink": {"mode": "session", "warmup_batches": 0}})))
    log = tmp_path / "harness.log"
    with open(log, "wb") as out:
        harness = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scen), "--results-dir",
                                    str(results)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    registry = own_stack / "processes"
    seen: dict[int, float] = {}  # every process the run started: pid -> create_time
    try:
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            assert harness.poll() is None, log.read_text()
            entries = _entries(registry)
            for p in psutil.Process(harness.pid).children(recursive=True):
                try:
                    seen[p.pid] = p.create_time()
                except psutil.NoSuchProcess:
                    pass
            whats = [e["what"] for e in entries]
            if "flink job" in whats and whats.count("flink session cluster") >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the registry never showed the Flink job and its session cluster: {_entries(registry)}")
        # The baseline ran first and was stopped by the harness: its entry is gone.
        assert "baseline job" not in whats
        for e in entries:
            p = _same(e["pid"], e["create_time"])
            assert p is not None, e
            for q in [p, *p.children(recursive=True)]:
                seen[q.pid] = q.create_time()
        harness.send_signal(signal.SIGKILL)
        harness.wait(10)
        listed = {e["pid"] for e in entries}
        assert [e for e in _entries(registry) if e["pid"] in listed]  # a killed harness cleans nothing up

        status = run_cli("stack", "status", env=env)
        for pid in listed:
            assert str(pid) in status.stdout, status.stdout
        down = run_cli("stack", "down", env=env, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "registered process" in down.stdout
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)
        run_cli("stack", "down", "--processes-only", env=env, timeout=120)  # whatever a failed check left

    left = [pid for pid, created in seen.items() if _same(pid, created) is not None]
    assert not left, [psutil.Process(p).cmdline() for p in left]
    marker = str(results)
    assert not [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                if marker in " ".join(p.info["cmdline"] or [])]
    assert not _entries(registry)
    # The session stack was not touched.
    assert current_svc(stack_dir) == svc

"""Exact CPU per engine run from a control group of its own, and the fallback where none can be made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.metrics import cgroups

BURN_S = 1.5
BURNER = f"import time\nwhile time.process_time() < {BURN_S}: pass\n"


def test_group_counts_a_burning_child_within_5_percent() -> None:
    group, why = cgroups.EngineGroup.create(f"test-burn-{os.getpid()}")
    if group is None:
        pytest.skip(f"no cgroup here: {why}")
    try:
        before = group.cpu_seconds()
        cgroups.activate(group)
        try:   # the way the launcher starts an engine process: it joins the group before exec
            proc = subprocess.Popen([sys.executable, "-c", BURNER], preexec_fn=cgroups.preexec_active())
        finally:
            cgroups.activate(None)
        assert proc.pid in group.pids()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0
        used = group.cpu_seconds()
        assert before is not None and used is not None
        kernel = usage.ru_utime + usage.ru_stime          # the child's own CPU, from the kernel at reaping
        assert kernel >= BURN_S
        assert abs((used - before) - kernel) <= 0.05 * kernel, (used - before, kernel)
        if group.memory_dir is not None:
            peak = group.memory_max_bytes()
            assert peak is not None and peak > 1_000_000     # an interpreter's pages were charged here
        assert str(group.cpu_dir).startswith(str(cgroups.ROOT)) and cgroups.SUBTREE in group.cpu_dir.parts
    finally:
        group.close()
    assert not group.cpu_dir.exists()


def test_fallback_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CGROUPS", "0")
    group, why = cgroups.EngineGroup.create("test-off")
    assert group is None and "HARNESS_CGROUPS=0" in why


def test_own_paths_reads_v1_and_v2_lines() -> None:
    own = cgroups._own_paths("4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu,cpuacct:/x\n0::/user.slice\n")
    assert own["memory"] == "/process_api/abc" and own["cpu"] == "/x" and own[""] == "/user.slice"


def test_a_group_left_by_a_killed_harness_is_removed_next_time() -> None:
    left, why = cgroups.EngineGroup.create(f"test-left-{os.getpid()}")
    if left is None:
        pytest.skip(f"no cgroup here: {why}")
    assert left.cpu_dir.exists()          # never closed, as when the harness is SIGKILLed
    fresh, _ = cgroups.EngineGroup.create(f"test-fresh-{os.getpid()}")
    assert fresh is not None
    try:
        assert not left.cpu_dir.exists() and fresh.cpu_dir.exists()
    finally:
        fresh.close()

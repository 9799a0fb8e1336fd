"""The resource sampler (harness/metrics/resources.py) on real processes whose CPU is known: a child that burns
a measured amount of CPU and exits, as a batch run does under its scheduler, must be counted once.

No services. Each process reports its own CPU (os.times at its end); the sampler only sees /proc.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.metrics.resources import ResourceSampler

# A process that burns `burn` CPU seconds (or, with depth > 0, starts one like itself and waits for it), then
# writes its own CPU and, for depth > 0, that of its reaped children, and stays alive for `hold` seconds.
PROC = r"""
import json, os, subprocess, sys, time
burn, depth, hold, out = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
if depth:
    subprocess.run([sys.executable, "-c", sys.argv[5], str(burn), str(depth - 1), "0", out + ".c", sys.argv[5]],
                   check=True)
else:
    while time.process_time() < burn:
        pass
t = os.times()
with open(out + ".tmp", "w") as f:
    json.dump({"own": t.user + t.system, "children": t.children_user + t.children_system}, f)
os.replace(out + ".tmp", out)
time.sleep(hold)
"""


def _sample_until_done(tmp: Path, burn: float, depth: int) -> tuple[ResourceSampler, list[dict[str, float]]]:
    out = tmp / "cpu.json"
    proc = subprocess.Popen([sys.executable, "-c", PROC, str(burn), str(depth), "30", str(out), PROC])
    sampler = ResourceSampler()
    t0 = time.monotonic()
    try:
        deadline = t0 + 60
        while not out.exists() and time.monotonic() < deadline:
            sampler.sample([proc.pid], t0)
            time.sleep(0.1)
        assert out.exists(), "the process did not finish burning within 60 s"
        for _ in range(3):  # the root is alive and has reaped everything below it
            sampler.sample([proc.pid], t0)
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    reports = [json.loads(p.read_text()) for p in sorted(tmp.glob("cpu.json*")) if not p.name.endswith(".tmp")]
    return sampler, reports


@pytest.mark.parametrize("burn,depth", [(1.6, 1), (0.3, 1), (1.6, 2)],
                         ids=["child-sampled-then-exits", "child-too-young-to-sample", "grandchild-exits"])
def test_exited_children_are_counted_once(tmp_path: Path, burn: float, depth: int) -> None:
    sampler, reports = _sample_until_done(tmp_path, burn, depth)
    own = sum(r["own"] for r in reports)  # every process in the tree, each by itself
    assert len(reports) == depth + 1
    burner = min(reports, key=lambda r: r["children"])
    assert burner["own"] >= burn - 0.02  # os.times counts 10 ms clock ticks
    cpu = sampler.cpu_seconds
    # Each process's CPU once: not less (an exited child lost), not more (counted alive and again once reaped).
    # The slack covers what the processes did after reporting (exit, one json.dump) and 10 ms clock ticks.
    assert own - 0.02 <= cpu <= own + 0.1, (cpu, reports, sampler.cpu_by_pid)
    assert sampler.summary(1000)["cpu_seconds"] == round(cpu, 3)
    series = [row["cpu_s"] for row in sampler.series]
    assert series == sorted(series), series  # cumulative CPU never goes back

"""`harness bench memory`: the harness's own memory per event of a load, the figure the pre-run memory check
(harness.run.memory_budget) is built on.

In a fresh Python process (so the peak is this load's, not an earlier one's) it builds the quick scenario's mix
at a rate giving `events` events, computes its ground truth exactly as a run does (hand-off = intended time),
and reads the process's peak RSS before and after. The difference over the events is the peak bytes per event
of ground truth; the generator's arrays and the schedule are added by the check from their dtypes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from harness import paths

PROBE = r"""
import json, resource, sys, time
import numpy as np
from harness import groundtruth
from harness.loadgen.events import EventModel
from harness.scenario import Scenario, load_scenario

events, seconds = int(sys.argv[1]), int(sys.argv[2])
base = load_scenario(sys.argv[3]).model_dump(mode="json")
base["load"]["rate"] = events / seconds
base["duration"] = f"{seconds}s"
s = Scenario.model_validate(base)
model = EventModel(s)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
n = model.count
handoff = np.empty(n, dtype=np.int64)
for start in range(0, n, 500_000):
    b = model.block(start, min(n, start + 500_000))
    handoff[start:start + len(b)] = np.floor(b.due_ms).astype(np.int64) + 1_800_000_000_000
gt = groundtruth.compute(s, model, 1_800_000_000_000, handoff, n)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"events": n, "seconds": round(time.perf_counter() - t, 2), "peak_before": before,
                  "peak_after": after, "windows": {k: len(v) for k, v in gt.windows.items()}}))
"""


def measure(events: int, seconds: int = 60, scenario: str | None = None) -> dict[str, Any]:
    scen = scenario or str(paths.PROJECT_ROOT / "scenarios" / "quick.yaml")
    out = subprocess.run([sys.executable, "-c", PROBE, str(events), str(seconds), scen], capture_output=True,
                         text=True, check=True, cwd=paths.PROJECT_ROOT)
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    res["scenario"] = scen
    res["bytes_per_event"] = round((res["peak_after"] - res["peak_before"]) / max(1, res["events"]), 1)
    return res

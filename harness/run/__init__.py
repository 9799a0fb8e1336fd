"""A run as a few phases.

    planning      every engine's settings validated and plan() asked, before anything starts (planning.py)
    load session  topic, event model, generator thread, ground truth (load.py)
    monitor       sampling of processes, position, lag and sink rows on one clock (monitor.py)
    engine run    prepare → start engine → load → wait → measure → stop (phases.py)
    whole run     services, repeats, engines one after another, result.json as it goes (scenario_run.py)

The modes still to come only reorder or repeat these phases:

* backlog: LoadSession.begin() and its wait for load_done run before EngineRun.start_engine();
* staircase: one start_engine(), then run_load/wait/measure once per rate step on a LoadSession per step, and
  one stop();
* faults: an injection schedule checked inside the wait() loop, between samples;
* sharded load: LoadSession owns several generators (one per producer process) behind the same begin/stop.
"""

from harness.run.hooks import RunHooks, RunOptions
from harness.run.load import LoadOutcome, LoadSession, run_load
from harness.run.planning import PlannedEngine, plan_engines
from harness.run.scenario_run import run

__all__ = ["LoadOutcome", "LoadSession", "PlannedEngine", "RunHooks", "RunOptions", "plan_engines", "run", "run_load"]

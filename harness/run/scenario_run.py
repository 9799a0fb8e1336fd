"""The whole run: plan, services, then for each repeat and engine one EngineRun (or one load-only pass), all
written to results/<run_id>/result.json as the run goes."""

from __future__ import annotations

import time
from pathlib import Path

from harness import environment, paths
from harness.errors import EXIT_FAILED, HarnessError
from harness.run import memory_budget
from harness.run.hooks import RunHooks, RunOptions
from harness.run.load import LoadSource, run_load
from harness.run.phases import EngineRun
from harness.run.planning import PlannedEngine, new_run_id, plan_engines
from harness.scenario import load_scenario
from harness.stack.probes import redact
from harness.stack.services import Services as StackServices, services
from harness.results.document import Machine, ResultDocument, Services, Versions
from harness.storage.results import ResultFile, utc_now


def run(opts: RunOptions, hooks: RunHooks | None = None) -> Path:
    """Run a scenario and return its run folder. The folder holds result.json even when the run fails."""
    hooks = hooks or RunHooks()
    scenario = load_scenario(opts.scenario_path, backlog=opts.backlog)
    if opts.repeat < 1:
        raise HarnessError(f"--repeat must be 1 or more, got {opts.repeat}")
    planned = plan_engines(scenario, str(opts.scenario_path), opts.engines, opts.engine_options)
    if opts.load not in ("generator", "locust"):
        raise HarnessError(f"--load {opts.load!r}: allowed: generator (one process) or locust (a master and "
                           "--locust-workers workers)")
    source = LoadSource("locust" if opts.load == "locust" else "generator", opts.locust_workers)
    source.check(scenario)
    memory_budget.check(scenario, str(opts.scenario_path))     # exit 2 before anything starts
    if (warning := memory_budget.rate_warning(scenario)) is not None:
        hooks.message(f"warning: {warning}")
    run_id = opts.run_id or new_run_id(scenario)
    run_dir = (opts.results_dir or paths.results_dir()) / run_id
    started = time.monotonic()
    results = ResultFile(run_dir, ResultDocument(
        run_id=run_id, status="running", started_at=utc_now(), scenario_file=str(opts.scenario_path),
        scenario=scenario, engines_requested=[p.name for p in planned], repeat=opts.repeat,
        machine=Machine.model_validate(environment.machine())))
    hooks.started(run_dir)
    status, error = "failed", None
    try:
        with services(opts.bootstrap, opts.dsn, scenario_bootstrap=scenario.services.bootstrap_servers,
                      scenario_dsn=scenario.services.postgres_dsn, progress=hooks.message) as svc:
            record_services(results, svc, planned)
            if not planned:
                run_load(scenario, svc.bootstrap, svc.dsn, run_id=run_id, load_id=f"{run_id}.load.0", engine=None,
                         repeat=0, results=results, hooks=hooks, source=source)
            for repeat in range(opts.repeat):
                # rotated per repeat, so that no engine always runs first on a cold machine or last on a warm one
                shift = repeat % len(planned) if planned else 0
                for p in planned[shift:] + planned[:shift]:
                    EngineRun(p, scenario, svc.bootstrap, svc.dsn, run_id=run_id, repeat=repeat, results=results,
                              hooks=hooks, service_pids=svc.service_pids,
                              stack=svc.stack, external=svc.external, source=source).run()
        failed = [e for e in results.doc.engines if e.status in ("failed", "timeout")]
        status = "complete" if not failed else "failed"
        if failed:
            error = "; ".join(f"{e.engine}#{e.repeat}: {e.error}" for e in failed)
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM); what was measured is kept"
        raise
    except HarnessError as exc:
        error = exc.message
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise HarnessError(f"run {run_id} failed: {error}; what was measured is in {run_dir}",
                           exit_code=EXIT_FAILED) from exc
    finally:
        doc = results.doc
        doc.status, doc.error, doc.finished_at = status, error, utc_now()
        doc.wall_seconds = round(time.monotonic() - started, 3)
        results.save()
    if status == "failed":
        raise HarnessError(f"run {run_id} finished with failures: {error}; results in {run_dir}", exit_code=EXIT_FAILED)
    return run_dir


def record_services(results: ResultFile, svc: StackServices, planned: list[PlannedEngine]) -> None:
    """Which services the run used (addresses, the password redacted) and every version, saved at once."""
    results.doc.services = Services(kafka="external" if "kafka" in svc.external else "embedded",
                                    bootstrap=svc.bootstrap,
                                    postgres="external" if "postgres" in svc.external else "embedded",
                                    postgres_dsn=redact(svc.dsn))
    results.doc.versions = Versions.model_validate(environment.versions(svc.dsn, [p.cls for p in planned],
                                                                      bootstrap=svc.bootstrap))
    results.save()

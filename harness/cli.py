"""The command line: the only module that prints, parses options and turns errors into exit codes."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import EXIT_USAGE, HarnessError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    help="Benchmark Flink (continuous), Spark Structured Streaming (micro-batch) and an hourly batch job "
         "on the same seeded Kafka load, checked against ground truth.\n\n"
         "Start with `harness run scenarios/quick.yaml`; the embedded Kafka and PostgreSQL start by themselves.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The embedded Kafka broker (KRaft) and PostgreSQL server.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures (never timed assertions).", no_args_is_help=True)
scenario_app = typer.Typer(help="Scenario files: check them before a run.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(bench_app, name="bench")
app.add_typer(scenario_app, name="scenario")

# Wide when piped (CI logs, files): rich would otherwise wrap tables at 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

BootstrapOpt = typer.Option(None, "--bootstrap-servers", envvar="HARNESS_BOOTSTRAP_SERVERS",
                            help="Use this Kafka-protocol broker (Redpanda, a managed Kafka) instead of the embedded one.")
DsnOpt = typer.Option(None, "--postgres-dsn", envvar="HARNESS_POSTGRES_DSN",
                      help="Use this PostgreSQL (postgresql://user:pass@host:port/db) instead of the embedded one.")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, `kill`): handled like Ctrl-C, so measurements are kept and engines stopped."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Terminated()


def user_errors(fn: F) -> F:
    """Turn HarnessError into a red message and its exit code; Ctrl-C into exit 130, SIGTERM into 143."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return fn(*args, **kwargs)
        except HarnessError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False, markup=True)
            if exc.hint:
                err.print(f"  [yellow]hint:[/] {exc.hint}", highlight=False)
            raise typer.Exit(exc.exit_code)
        except Terminated:
            err.print("[yellow]terminated (SIGTERM)[/]")
            raise typer.Exit(143)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130)

    return wrapper  # type: ignore[return-value]


def say(message: str) -> None:
    err.print(f"[dim]·[/] {message}", highlight=False)


# -- stack ------------------------------------------------------------------------------------------
@stack_app.command("up")
@user_errors
def stack_up(
    kafka_port: Optional[int] = typer.Option(None, help="Broker port on 127.0.0.1 (default: the last one, else a free one)."),
    postgres_port: Optional[int] = typer.Option(None, help="PostgreSQL port on 127.0.0.1 (default: as for Kafka)."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
    postgres_dsn: Optional[str] = DsnOpt,
) -> None:
    """Start the embedded broker and database (those not given as external) and wait until both serve."""
    import time

    from harness.stack import probes
    from harness.stack.embedded import EmbeddedStack

    t = time.monotonic()
    if bootstrap_servers:
        probes.check_reachable_kafka(bootstrap_servers)
        probes.probe_kafka(bootstrap_servers)
    if postgres_dsn:
        probes.check_reachable_postgres(postgres_dsn)
        probes.probe_postgres(postgres_dsn)
    stack = EmbeddedStack()
    stack.up(kafka=not bootstrap_servers, postgres=not postgres_dsn, kafka_port=kafka_port,
             postgres_port=postgres_port, progress=say)
    _print_status(stack, bootstrap_servers, postgres_dsn)
    out.print(f"stack up in {time.monotonic() - t:.1f} s (data and logs in {stack.root})")


@stack_app.command("down")
@user_errors
def stack_down(purge: bool = typer.Option(False, help="Also delete the broker's and database's data."),
               processes_only: bool = typer.Option(
                   False, "--processes-only",
                   help="Stop only the registered engine processes; leave Kafka and PostgreSQL running.")) -> None:
    """Stop the embedded broker and database; no process is left behind. Data stays for the next `up`.

    First the process registry (<stack dir>/processes): the engine jobs and session clusters that runs started, e.g. left running by a harness killed with SIGKILL, each stopped with its process tree and process group; stale entries are removed. This works when Kafka and PostgreSQL are not running.

    An entry names a pid with its start time, so a pid since reused by another process is never touched.
    """  # noqa: E501 (one line per paragraph: the help text is wrapped to the terminal)
    from harness.stack import processes
    from harness.stack.embedded import EmbeddedStack

    left = processes.stop_registered()
    if left:
        out.print(f"stopped {len(left)} registered process(es): "
                  + ", ".join(f"{e['what']} (pid {e['pid']})" for e in left))
    if processes_only:
        if not left:
            out.print("no registered process was running")
        return
    stack = EmbeddedStack()
    stopped = stack.down(purge=purge)
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("status")
@user_errors
def stack_status(bootstrap_servers: Optional[str] = BootstrapOpt, postgres_dsn: Optional[str] = DsnOpt) -> None:
    """Show what runs and where, and the registered engine processes still running; with external services,
    check that they answer (exit 2 if not)."""
    from harness.stack import probes
    from harness.stack.embedded import EmbeddedStack

    if bootstrap_servers:
        probes.check_reachable_kafka(bootstrap_servers)
    if postgres_dsn:
        probes.check_reachable_postgres(postgres_dsn)
    stack = EmbeddedStack()
    _print_status(stack, bootstrap_servers, postgres_dsn)
    _print_registered()
    if not (bootstrap_servers or stack.kafka_running()) or not (postgres_dsn or stack.postgres_running()):
        raise typer.Exit(3)


def _print_registered() -> None:
    """The process registry's entries that still run (engine jobs, session clusters)."""
    from harness.stack import processes

    running = [e for e in processes.registered() if e["alive"]]
    if not running:
        return
    table = Table(title="registered processes (`harness stack down` stops them)", show_header=True)
    for col in ("pid", "what", "run", "load", "command"):
        table.add_column(col, overflow="fold")
    for e in running:
        table.add_row(str(e["pid"]), str(e.get("what", "-")), str(e.get("run_id", "-")), str(e.get("load_id", "-")),
                      " ".join(e.get("cmdline", []))[:200])
    out.print(table)


def _print_status(stack: Any, bootstrap: str | None, dsn: str | None) -> None:
    from harness.stack.probes import redact

    table = Table(title="services", show_header=True)
    for col in ("service", "source", "state", "address", "pid"):
        table.add_column(col, overflow="fold")
    if bootstrap:
        table.add_row("kafka", "external", "reachable", bootstrap, "-")
    else:
        running = stack.kafka_running()
        table.add_row("kafka", "embedded", "running" if running else "stopped",
                      str(stack.state.kafka.get("bootstrap", "-")), str(stack.state.kafka.get("pid", "-")) if running else "-")
    if dsn:
        table.add_row("postgres", "external", "reachable", redact(dsn), "-")
    else:
        running = stack.postgres_running()
        table.add_row("postgres", "embedded", "running" if running else "stopped",
                      str(stack.state.postgres.get("dsn", "-")), str(stack.state.postgres.get("pid", "-")) if running else "-")
    out.print(table)


# -- scenarios and runs -----------------------------------------------------------------------------
@scenario_app.command("validate")
@user_errors
def scenario_validate(files: list[Path] = typer.Argument(..., help="Scenario YAML files.")) -> None:
    """Check scenario files; print what each will send. Exit 2 naming the first bad field."""
    from harness.durations import format_duration
    from harness.run import memory_budget
    from harness.scenario import load_scenario

    for f in files:
        s = load_scenario(f)
        est = memory_budget.check(s, str(f))
        w = s.query.window
        shape = w.type + "".join(f" {k}={format_duration(getattr(w, k))}" for k in ("size", "slide", "gap")
                                 if getattr(w, k) is not None)
        out.print(f"[green]ok[/] {f}: {s.name}: {est.events} events over {format_duration(s.duration)} "
                  f"({s.load.shape.type} {s.load.rate:g}/s), {shape} windows, "
                  f"engines: {', '.join(s.engines) or 'none'}; memory in the harness about "
                  f"{memory_budget.gib(est.needed_bytes)} of {memory_budget.gib(est.available_bytes)} available",
                  highlight=False)
        if (warning := memory_budget.rate_warning(s)) is not None:
            out.print(f"[yellow]warning[/] {f}: {warning}", highlight=False)


@app.command("run")
@user_errors
def run_cmd(
    scenario: Path = typer.Argument(..., help="Scenario file, e.g. scenarios/quick.yaml."),
    engines: Optional[str] = typer.Option(None, help="Comma-separated engines to run (default: the scenario's "
                                          "engines section; --engines \"\" or a scenario without engines: a load-only pass). "
                                          "`harness engines` lists them."),
    engine_option: list[str] = typer.Option([], "--engine-option", "-o",
                                            help="NAME.KEY=VALUE, overrides engines.NAME.KEY of the scenario "
                                                 "(repeatable), e.g. -o flink.parallelism=2."),
    repeat: int = typer.Option(1, min=1, help="Run each engine this many times (fresh topic each) to measure spread."),
    backlog: bool = typer.Option(False, "--backlog", help="Backlog mode (load.mode: backlog): fill each engine's "
                                 "topic first, as fast as the generator can, with event times in the past, then "
                                 "start the engine and measure how fast it drains it (the batch job: one run over "
                                 "the whole load). Refused with late data or faults."),
    load: str = typer.Option("generator", "--load", help="Who sends the load: generator (one process at nice -10) "
                             "or locust (a headless Locust master and --locust-workers workers here, each one "
                             "shard of the same load; their figures and the skew between them are in the "
                             "result)."),
    locust_workers: int = typer.Option(2, "--locust-workers", min=1, help="With --load locust: the workers, at "
                                       "most the topic's partitions."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
    postgres_dsn: Optional[str] = DsnOpt,
    results_dir: Optional[Path] = typer.Option(None, help="Where run folders go (default: results/)."),
) -> None:
    """Run a scenario: for each engine a fresh topic, the seeded load, the wait for the engine's final answer,
    and its measurements against ground truth, in results/<run_id>/result.json.

    The embedded Kafka and PostgreSQL are started for the run (and stopped after) unless they already run
    or external ones are given. Engines run one after another, each on the same deterministic load.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from harness.run import RunHooks, RunOptions, run

    names = [e.strip() for e in engines.split(",") if e.strip()] if engines is not None else None
    bars: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err, transient=False) as prog:

        def sending(load_id: str, stats: Any) -> None:
            label = load_id.split(".")[-2]
            if load_id not in bars:
                bars[load_id] = prog.add_task(f"{label}: sending", total=stats.scheduled, info="")
            prog.update(bars[load_id], completed=stats.sent,
                        info=f"acked {stats.acked}, heartbeats {stats.heartbeats_sent}, errors {stats.delivery_errors}")

        def monitor(engine: str, row: dict[str, Any]) -> None:
            key = f"{engine}:windows"
            if row.get("windows_expected"):
                if key not in bars:
                    bars[key] = prog.add_task(f"{engine}: windows final", total=row["windows_expected"], info="")
                prog.update(bars[key], completed=row["windows_matched"],
                            info=f"lag {row.get('lag')}, rows out {row.get('rows_out')}, rss {row.get('rss_mb')} MB")

        started: list[Path] = []
        hooks = RunHooks(message=lambda m: prog.console.print(f"[dim]·[/] {m}", highlight=False), sending=sending,
                         monitor=monitor, started=started.append)
        opts = RunOptions(scenario, bootstrap_servers, postgres_dsn, results_dir, engines=names,
                          engine_options=engine_option, repeat=repeat, backlog=backlog, load=load,
                          locust_workers=locust_workers)
        try:
            run_dir = run(opts, hooks)
        finally:
            # The runner names the folder as soon as it creates it; a failed, interrupted or terminated run
            # gets its summary and reports too (nothing else is known about a run that never created one).
            if started:
                _finish(started[0])


@app.command("capacity")
@user_errors
def capacity_cmd(
    scenario: Path = typer.Argument(..., help="Scenario file, e.g. scenarios/quick.yaml: its query, keys, payload "
                                    "and bad input; its rate is where the staircase starts."),
    engines: Optional[str] = typer.Option(None, help="Comma-separated engines (default: the scenario's engines; "
                                          "interval engines such as batch are skipped: see backlog mode)."),
    engine_option: list[str] = typer.Option([], "--engine-option", "-o", help="NAME.KEY=VALUE, as for `harness run`."),
    step: str = typer.Option("20s", help="How long each step offers its rate; its first `warmup` is not judged."),
    start_rate: Optional[float] = typer.Option(None, help="The first step's rate (default: the scenario's load.rate)."),
    max_rate: float = typer.Option(200_000, help="Doubling stops here; the search reports no upper bracket then."),
    max_steps: int = typer.Option(20, help="At most this many steps per engine."),
    confirm: bool = typer.Option(True, help="Run a step that was not sustainable once more at the same rate; the "
                                 "rate passes when the repeat does (one hiccup on a shared machine does not set "
                                 "the bracket)."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
    postgres_dsn: Optional[str] = DsnOpt,
    results_dir: Optional[Path] = typer.Option(None, help="Where run folders go (default: results/)."),
) -> None:
    """Find each engine's sustainable rate: one running instance per engine takes a staircase of constant rates
    (doubling, then bisection around the knee, until the bracket is within 10% of its lower end).

    A step is sustainable when, after its warm-up, the lag does not grow (the keeping-up rule of `harness run`)
    and its p99 latency meets the scenario's slo.p99_latency (or, without one, a window-close p99 within the
    watermark delay + 5 s). A step whose generator fell behind (achieved rate over 2% short, or send-delay p99
    over 5 ms) is machine-bound: it bounds the search from above and never passes. An engine whose batches
    lengthen only slowly under too much load (Spark's micro-batches) runs its steps after the first failure
    three times as long, and its search ends only once the rate it reports held for such a step. Each step is saved in
    results/<run_id>/result.json as it finishes, with its latency, CPU per million events and the CPU the
    broker, PostgreSQL and the generator used; the report's Capacity section draws the curve.
    """
    from harness.durations import parse_duration
    from harness.run import RunHooks
    from harness.run.capacity import CapacityOptions, run_capacity

    try:
        step_ms = parse_duration(step)
    except ValueError as exc:
        raise HarnessError(f"--step: {exc}") from None
    names = [e.strip() for e in engines.split(",") if e.strip()] if engines is not None else None
    started: list[Path] = []
    last: dict[str, float] = {}

    def monitor(engine: str, row: dict[str, Any]) -> None:
        now = row.get("wall_ms", 0) / 1000
        if now - last.get(engine, 0) < 2:     # a line every 2 s is enough to see it move
            return
        last[engine] = now
        what = "draining" if row.get("draining") else "step"
        windows = (f", windows {row['windows_matched']}/{row['windows_expected']}"
                   if row.get("windows_expected") else "")
        err.print(f"[dim]  {engine} {what} {row.get('step')} at {row.get('rate', 0):,.0f}/s: lag {row.get('lag')}, "
                  f"read {row.get('records_in')}, rows out {row.get('rows_out')}{windows}[/]", highlight=False)

    hooks = RunHooks(message=lambda m: err.print(f"[dim]·[/] {m}", highlight=False), monitor=monitor,
                     started=started.append)
    opts = CapacityOptions(scenario, engines=names, engine_options=engine_option, step_ms=step_ms,
                           start_rate=start_rate, max_rate=max_rate, max_steps=max_steps, confirm=confirm,
                           bootstrap=bootstrap_servers,
                           dsn=postgres_dsn, results_dir=results_dir)
    try:
        run_capacity(opts, hooks)
    finally:
        if started:
            try:
                _print_capacity_summary(started[0])
            except Exception as exc:
                err.print(f"[yellow]warning:[/] no summary: {type(exc).__name__}: {exc}")
            _write_report(started[0])


def _print_capacity_summary(run_dir: Path) -> None:
    from harness import results

    doc = results.load(run_dir)
    out.print(f"capacity run {doc.run_id}: {doc.status}" + (f" ({doc.error})" if doc.error else ""), highlight=False)
    for c in doc.capacity:
        head = (f"{c.engine}: sustainable {c.sustainable_rate:,.0f} events/s" if c.sustainable_rate is not None
                else f"{c.engine}: no sustainable rate found")
        if c.bracket_high is not None:
            head += f" (bracket {c.sustainable_rate or 0:,.0f} .. {c.bracket_high:,.0f}, closed by the {c.bound_by})"
        out.print(head + f" [{c.status}]" + (f": {c.reason or c.error}" if c.reason or c.error else ""),
                  highlight=False)
        if not c.steps:
            continue
        table = Table()
        for col in ("step", "rate/s", "achieved/s", "verdict", "lag slope/s", "p50 ms", "p99 ms",
                    "CPU s/M ev", "cores eng/broker/pg/gen", "reason"):
            table.add_column(col, overflow="fold")
        lat = "event_to_result_ms" if c.latency_bound_metric == "event_to_result" else "window_close_ms"
        for s in c.steps:
            p = getattr(s, lat)
            cores = "/".join("-" if v is None else f"{v:.2f}" for v in
                             (s.cores.engine, s.cores.broker, s.cores.postgres, s.cores.generator))
            table.add_row(str(s.index + 1), f"{s.rate:,.0f}", "-" if s.achieved_rate_eps is None
                          else f"{s.achieved_rate_eps:,.0f}", s.verdict,
                          "-" if s.keeping_up.lag_slope_records_per_s is None
                          else f"{s.keeping_up.lag_slope_records_per_s:,.0f}",
                          "-" if p.p50 is None else f"{p.p50:,.0f}", "-" if p.p99 is None else f"{p.p99:,.0f}",
                          "-" if s.cpu_seconds_per_million is None else f"{s.cpu_seconds_per_million:,.1f}",
                          cores, s.reason if s.verdict != "sustainable" else "")
        out.print(table)
    out.print(f"results: {run_dir / 'result.json'}")


@app.command("load")
@user_errors
def load_cmd(
    scenario: Path = typer.Argument(..., help="Scenario file: its load is sent; engines and SLOs are not used."),
    shard: Optional[str] = typer.Option(None, help="i/N: send only the events of the partitions p with "
                                        "p % N == i, and heartbeats to those only (one of N producers)."),
    topic: Optional[str] = typer.Option(None, help="Topic to send to (created with the scenario's partitions if "
                                        "missing). Default: harness.load.<scenario>.<time base>."),
    time_base: Optional[int] = typer.Option(None, "--time-base", help="Epoch milliseconds the schedule starts "
                                            "at; every shard of one load needs the same one (default: the next "
                                            "window boundary at least 1.5 s ahead)."),
    out: Optional[Path] = typer.Option(None, help="Write shard.json (figures) and this shard's ground truth "
                                       "(expected_<answer>.csv) here (with --locust-workers: shard-<i>/ for each, "
                                       "and Locust's statistics)."),
    locust_workers: Optional[int] = typer.Option(None, "--locust-workers", min=1, help="Start a headless Locust "
                                                 "master and N workers here, each worker one shard (i/N) of the load."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
) -> None:
    """Send a scenario's load, or one shard of it, to a running broker, on the open-loop schedule; print its
    figures as JSON (events sent and acknowledged, achieved rate, send delays).

    The union of shards 0/N .. N-1/N with one time base is exactly the single generator's load: the same events
    and intended send times, and ground truth that is the union of theirs. Needs a broker already running
    (`harness stack up`, or --bootstrap-servers).
    """
    import json as _json
    import time

    from harness.loadgen.generator import Shard
    from harness.run.planning import close_horizon_ms, next_time_base
    from harness.run.shard import run_shard
    from harness.scenario import load_scenario
    from harness.stack.embedded import EmbeddedStack
    from harness.stack.services import ENV_BOOTSTRAP, choose

    scen = load_scenario(scenario)
    try:
        sh = Shard.parse(shard) if shard is not None else None
        if sh is not None:
            sh.partitions(scen.topic.partitions)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    if locust_workers is not None and (sh is not None or time_base is not None):
        raise HarnessError("--locust-workers shards the load itself and picks the time base: leave out --shard "
                           "and --time-base")
    if locust_workers is not None and locust_workers > scen.topic.partitions:
        raise HarnessError(f"--locust-workers {locust_workers}: each worker owns at least one partition, and the "
                           f"scenario's topic has {scen.topic.partitions}")
    if sh is not None and time_base is None:
        raise HarnessError("--shard needs --time-base: every shard of one load must start its schedule at the same "
                           "instant (epoch ms, e.g. a few seconds from now on a window boundary)")
    bootstrap = choose(bootstrap_servers, ENV_BOOTSTRAP, scen.services.bootstrap_servers)
    if bootstrap is None:
        stack = EmbeddedStack()
        if not stack.kafka_running():
            raise HarnessError("no broker: start the embedded one with `harness stack up`, or give "
                               "--bootstrap-servers HOST:PORT")
        bootstrap = str(stack.bootstrap)
    if locust_workers is not None:
        from harness import paths
        from harness.run.locust_load import run_locust

        name = topic or f"harness.load.{scen.name}.locust.{time.time_ns() // 1_000_000}"
        folder = out or paths.results_dir() / name.replace("harness.", "")
        res = run_locust(scenario, scen, bootstrap, name, locust_workers, folder, say)
        sys.stdout.write(_json.dumps(res) + "\n")
        return
    tb = time_base if time_base is not None else next_time_base(scen)
    name = topic or f"harness.load.{scen.name}.{tb}"
    err.print(f"[dim]·[/] sending {'shard ' + shard + ' of ' if shard else ''}{scen.name} to {name} from {tb}",
              highlight=False)
    result = run_shard(scen, bootstrap, name, tb, sh, heartbeat_until_ms=tb + close_horizon_ms(scen), out=out)
    sys.stdout.write(_json.dumps(result) + "\n")   # one JSON line, never wrapped


def _finish(run_dir: Path) -> None:
    try:
        _print_run_summary(run_dir)
    except Exception as exc:  # the reports still say what was measured
        err.print(f"[yellow]warning:[/] no summary: {type(exc).__name__}: {exc}")
    _write_report(run_dir)


def _write_report(run_dir: Path) -> None:
    """Every run gets its report, a failed or interrupted one too (marked incomplete)."""
    try:
        from harness.report import build_report

        html, md = build_report(run_dir)
        out.print(f"report: {html}\nsummary: {md}")
    except Exception as exc:  # the measurements are safe in result.json; say why the report is missing
        err.print(f"[yellow]warning:[/] the report could not be written: {type(exc).__name__}: {exc}")


@app.command("engines")
@user_errors
def engines_cmd() -> None:
    """List the discovered engines and what each can do.

    Engines are the folders pipelines/<name>/ (or those in HARNESS_ENGINE_PATH, which replace it) whose
    engine.py defines ENGINE, and entry points in the group stream_harness.engines. Role "floor" marks a
    reference point (the plain consumer), "option" a choice a team could make."""
    from harness.engines.discovery import discover

    table = Table(title="engines")
    for col in ("name", "role", "windows", "triggers", "allowed lateness", "emits", "settings", "description"):
        table.add_column(col, overflow="fold")
    for name, cls in discover().items():
        caps = cls.capabilities
        fields = ", ".join(f"{k}={v.default!r}" for k, v in cls.settings_model.model_fields.items())
        table.add_row(name, getattr(cls, "role", "option"), ", ".join(sorted(caps.window_types)),
                      ", ".join(caps.triggers), "yes" if caps.allowed_lateness else "no", caps.emits, fields,
                      cls.description)
    out.print(table)


@app.command("setup")
@user_errors
def setup_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be done; change nothing."),
    force: bool = typer.Option(False, "--force", help="Redo every step, even those whose stamp is up to date."),
) -> None:
    """Fetch what the stack and every discovered engine need: jars, Python requirements, own environments.

    Each engine says what it needs with files in its folder: a pom.xml (its jars: `mvn -f <folder>/pom.xml generate-resources -Djars.dir=...` copies them to .cache/jars/<name>/) and a requirements.txt (its Python libraries). An engine whose class sets environment = "shared" gets them in the harness's environment: one pip call for every shared engine together with the harness's pins, so a conflict is an error; environment = "own" gets a venv of its own in .cache/envs/<name>. The Kafka broker's jars come from jvm/kafka/pom.xml.

    Engines are found like everywhere else: folders in pipelines/ (or HARNESS_ENGINE_PATH) and entry points in the group stream_harness.engines, so a plug-in engine is set up the same way. Every step is skipped while its inputs are unchanged, so running this again is quick. `make setup` runs it after installing the harness.
    """  # noqa: E501 (one line per paragraph: the help text is wrapped to the terminal)
    from harness.engines import requirements

    needs = requirements.all_needs()
    steps = requirements.plan(needs)
    outcomes = requirements.run(steps, dry_run=dry_run, force=force, progress=say)
    for o in outcomes:
        verb = {"done": "[green]done[/]", "up to date": "[dim]up to date[/]", "would run": "[yellow]would run[/]"}
        out.print(f"{verb[o.status]}  {o.step.label}", highlight=False)
        if o.status != "up to date":
            for cmd in o.step.shown():
                out.print(f"    {cmd}", highlight=False, markup=False)
    covered = {n.name for s in steps for n in s.needs}
    for n in needs:
        if n.name not in covered:
            out.print(f"[dim]nothing to set up[/]  {n.label} (no pom.xml or requirements.txt in its folder)",
                      highlight=False)


def _print_run_summary(run_dir: Path) -> None:
    from harness import results

    doc = results.load(run_dir)
    out.print(f"run {doc.run_id}: {doc.status}" + (f" ({doc.error})" if doc.error else ""), highlight=False)
    for load in doc.loads:
        g, t = load.generator, load.ground_truth
        kinds = t.events_by_kind
        lost = f" ({g.unacknowledged} never acknowledged)" if g.unacknowledged else ""
        out.print(f"  load {load.load_id}: sent {g.events_sent}, acknowledged {g.events_acked}{lost} "
                  f"at {g.achieved_rate_eps} events/s; send delay p99 {g.send_delay_ms.p99} ms, "
                  f"ack latency p99 {g.ack_latency_ms.p99} ms; expected windows {t.windows_on_time} "
                  f"on time / {t.windows_complete} complete; late {kinds.get('late', 0)}, "
                  f"malformed {kinds.get('malformed', 0)}", highlight=False)
    if doc.engines:
        table = Table(title="engines")
        for col in ("engine", "status", "exact/expected", "wrong", "missing", "extra", "dup", "re-emit",
                    "p50 ms", "p99 ms", "in rec/s", "in/acked", "kept up", "gen on time", "CPU s/M ev (load)", "peak RSS MB",
                    "note"):
            table.add_column(col, overflow="fold", no_wrap=col in ("engine", "status", "kept up", "gen on time"))

        def show(v: object) -> str:
            return "-" if v is None else str(v)

        for e in doc.engines:
            w, th, res, cpu = e.windows, e.throughput, e.resources, e.cpu_during_load
            c = w.correctness if w else None
            lat = w.event_to_result_ms if w else None
            table.add_row(f"{e.engine}#{e.repeat}", e.status,
                          f"{show(c and c.exact)}/{show(c and c.expected)}", show(c and c.wrong),
                          show(c and c.missing), show(c and c.extra), show(w and w.duplicates),
                          show(w and w.re_emissions), show(lat and lat.p50), show(lat and lat.p99),
                          show(th and th.in_records_per_s), show(th and th.in_vs_acked),
                          "-" if e.keeping_up is None or e.keeping_up.kept_up is None
                          else "yes" if e.keeping_up.kept_up else "[red]NO[/]",
                          "-" if e.generator is None else "[red]NO[/]" if e.generator.fell_behind else "yes",
                          show(cpu and cpu.cpu_seconds_per_million_events), show(res and res.peak_rss_mb),
                          e.reason or e.error or "")
        out.print(table)
    for e in doc.engines:
        b = e.backlog
        if b is not None:
            out.print(f"  backlog {e.engine}#{e.repeat}: {b.events:,} events drained in {b.drain_s} s "
                      f"({b.events_per_s} events/s, {b.events_per_s_per_core} per core on {b.cores} cores), "
                      f"answer after {b.answer_s} s, {b.cpu_seconds_per_million} CPU s per million events"
                      + (f"; modelled latency p50 {b.modelled_latency_ms.p50} ms, p99 {b.modelled_latency_ms.p99} ms "
                         f"with a run every {b.modelled_interval_ms} ms" if b.modelled_latency_ms else ""),
                      highlight=False)
    out.print(f"results: {run_dir / 'result.json'}")


@app.command("report")
@user_errors
def report_cmd(run_dir: Path = typer.Argument(..., help="A run folder, e.g. results/<run_id>, or its result.json.")) -> None:
    """Write report.html (self-contained, plots embedded) and report.md next to result.json.

    Needs only the run folder: the stack can be down. `harness run` does this at the end of every run. A file
    that is not a result document, or one from a schema version this harness cannot read, is refused (exit 2).
    """
    from harness.report import build_report

    html, md = build_report(run_dir)
    out.print(f"report: {html}\nsummary: {md}")


@app.command("schema")
@user_errors
def schema_cmd(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write it here instead of printing it."),
) -> None:
    """Print the JSON Schema of result.json (docs/result-schema.json is this output; docs/results.md explains
    the fields). Use it to validate results in your own tools."""
    import json

    from harness.results.document import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        out.print(f"schema: {output}")


@app.command("compare")
@user_errors
def compare_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run folders (the first is the reference)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where compare.html/.md go (default: results/compare-<time>)."),
) -> None:
    """Compare runs (before and after a tuning change, two machines, two versions): the same tables and plots
    side by side, with differences inside the run-to-run spread called ties."""
    import time

    from harness import paths
    from harness.report import build_compare

    target = out_dir or paths.results_dir() / f"compare-{time.strftime('%Y%m%dT%H%M%S')}"
    html, md = build_compare(run_dirs, target)
    out.print(f"comparison: {html}\nsummary: {md}")


# -- benchmarks -------------------------------------------------------------------------------------
@bench_app.command("producer")
@user_errors
def bench_producer(
    records: int = typer.Option(1_000_000, min=1000, help="Records for each throughput test."),
    record_size: int = typer.Option(200, min=100, help="Bytes per record (the generator pads to this)."),
    partitions: int = typer.Option(3, min=1),
    rates: str = typer.Option("1000,10000,50000", help="Target rates (events/s) for the pacing test."),
    pace_seconds: float = typer.Option(10.0, min=1.0, help="Seconds per pacing test."),
    kafka_python_records: int = typer.Option(100_000, min=1000, help="kafka-python is slow: fewer records."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
) -> None:
    """Generator throughput vs kafka-producer-perf-test and kafka-python, and pacing accuracy.

    Figures are printed and saved to results/bench-producer-<time>.json; nothing is asserted.
    """
    import json
    import time

    from harness import environment, paths
    from harness.bench.producer import run_all
    from harness.stack.services import services

    try:
        rate_list = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise HarnessError(f"--rates takes comma-separated numbers, got {rates!r}") from None
    with services(bootstrap_servers, None, progress=say) as svc:
        res = run_all(svc.bootstrap, records=records, record_size=record_size, partitions=partitions,
                      rates=rate_list, pace_seconds=pace_seconds, kafka_python_records=kafka_python_records, say=say)
    res["machine"] = environment.machine()
    res["versions"] = environment.versions()
    base = next((r["records_per_s"] for r in res["throughput"] if r["producer"].startswith("kafka-producer-perf")), 0)
    table = Table(title=f"producer throughput, {record_size}-byte records, {partitions} partitions, acks=all")
    for col in ("producer", "records", "seconds", "records/s", "vs perf-test", "note"):
        table.add_column(col, overflow="fold")
    for r in res["throughput"]:
        ratio = f"{r['records_per_s'] / base:.2f}x" if base else "-"
        table.add_row(r["producer"], str(r["records"]), f"{r['seconds']:.2f}", f"{r['records_per_s']:,.0f}", ratio, r["note"])
    out.print(table)
    pt = Table(title="generator pacing (open loop)")
    for col in ("target/s", "acked", "achieved/s", "send delay p50 ms", "p99 ms", "max ms", "ack p99 ms"):
        pt.add_column(col)
    for p in res["pacing"]:
        d, a = p["send_delay_ms"], p["ack_latency_ms"]
        pt.add_row(f"{p['target_rate']:g}", str(p["acked"]), str(p["achieved_rate"]), str(d.get("p50")),
                   str(d.get("p99")), str(d.get("max")), str(a.get("p99")))
    out.print(pt)
    path = paths.results_dir() / f"bench-producer-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    out.print(f"saved: {path}")


@bench_app.command("engines")
@user_errors
def bench_engines(
    scenario: Path = typer.Argument(Path("scenarios/quick.yaml"), help="The query and load to compare on."),
    engines: Optional[str] = typer.Option(None, help="Comma-separated engines (default: the scenario's)."),
    backlog_events: int = typer.Option(600_000, min=10_000, help="Events in the backlog each engine drains."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
    postgres_dsn: Optional[str] = DsnOpt,
    results_dir: Optional[Path] = typer.Option(None, help="Where the two run folders go (default: results/)."),
) -> None:
    """The headline ratios from one sitting: the generator's ceiling, each engine's sustainable rate (`harness
    capacity`) and its backlog drain rate per core (`harness run --backlog`), each as a ratio to the
    reference-floor engine's (the baseline). Takes about 30 minutes on two cores; nothing is asserted.
    Printed, and saved to results/bench-engines-<time>.json beside the two run folders it made.
    """
    import json
    import time

    from harness import paths
    from harness.bench.engines import run_bench
    from harness.run import RunHooks

    names = [e.strip() for e in engines.split(",") if e.strip()] if engines is not None else None
    folder = results_dir or paths.results_dir()
    res = run_bench(scenario, engines=names, backlog_events=backlog_events, bootstrap=bootstrap_servers,
                    dsn=postgres_dsn, results_dir=folder, say=say,
                    hooks=RunHooks(message=lambda m: err.print(f"[dim]·[/] {m}", highlight=False)))
    out.print(f"generator ceiling: {res['generator_ceiling_eps']:,.0f} events/s (unpaced, this machine)")
    table = Table(title=f"engines on {scenario} (ratios to {res['floor'] or 'no floor engine'})")
    for col in ("engine", "sustainable events/s", "closed by", "ratio", "backlog events/s", "per core", "ratio",
                "backlog exact"):
        table.add_column(col)

    def f(v: Any, fmt: str = ",.0f") -> str:
        return "-" if v is None else format(v, fmt)

    for name, r in res["engines"].items():
        table.add_row(name, f(r.get("sustainable_eps")), r.get("bound_by") or "-", f(r.get("sustainable_eps_ratio"), ".2f"),
                      f(r.get("drain_eps")), f(r.get("drain_eps_per_core")), f(r.get("drain_eps_per_core_ratio"), ".2f"),
                      r.get("backlog_exact") or "-")
    out.print(table)
    path = folder / f"bench-engines-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2))
    out.print(f"saved: {path}")


@bench_app.command("completion")
@user_errors
def bench_completion(
    windows: int = typer.Option(100_000, min=100, help="Promised windows of the synthetic load."),
    interval: float = typer.Option(0.5, min=0.05, help="Seconds between incremental checks (the runner's is 0.5)."),
    seconds: float = typer.Option(20.0, min=1.0, help="Seconds the simulated engine spends writing."),
    history: int = typer.Option(0, min=0, help="Windows of another load written first, as history kept across runs."),
    seed: int = typer.Option(1),
    postgres_dsn: Optional[str] = DsnOpt,
) -> None:
    """The runner's incremental completion check while a simulated engine writes, against the full join.

    Figures are printed and saved to results/bench-completion-<time>.json; nothing is asserted. The bench's rows
    are deleted afterwards.
    """
    import json
    import time

    from harness import environment, paths
    from harness.bench.completion import postgres, run, summary_rows

    with postgres(postgres_dsn, say) as dsn:
        res = run(dsn, windows=windows, interval=interval, seconds=seconds, history=history, seed=seed, say=say)
        res["versions"] = environment.versions(dsn)
    res["machine"] = environment.machine()
    table = Table(title=f"completion check, {windows} windows, {res['log_rows']} log rows, "
                        f"{history} history windows, every {interval:g} s")
    for col in ("figure", "value"):
        table.add_column(col)
    for name, value in summary_rows(res):
        table.add_row(name, value)
    out.print(table)
    path = paths.results_dir() / f"bench-completion-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    out.print(f"saved: {path}")


@bench_app.command("memory")
@user_errors
def bench_memory(
    events: int = typer.Option(1_000_000, min=10_000, help="Events of the load whose ground truth is computed."),
) -> None:
    """The harness's peak memory per event of a load (ground truth), the figure `harness run` and `harness
    scenario validate` use to refuse a load that cannot fit in memory before anything starts.

    Runs in a fresh process on the quick scenario's mix; no services are needed. Saved to
    results/bench-memory-<time>.json; nothing is asserted.
    """
    import json
    import time

    from harness import environment, paths
    from harness.bench.memory import measure
    from harness.run import memory_budget

    res = measure(events)
    res["machine"] = environment.machine()
    res["used_by_the_check"] = memory_budget.BYTES_PER_EVENT_GROUND_TRUTH
    out.print(f"{res['events']:,} events: ground truth in {res['seconds']} s, peak RSS "
              f"{res['peak_before'] / 2**20:,.0f} -> {res['peak_after'] / 2**20:,.0f} MiB, "
              f"{res['bytes_per_event']:,.0f} bytes per event (the memory check uses "
              f"{memory_budget.BYTES_PER_EVENT_GROUND_TRUTH})", highlight=False)
    path = paths.results_dir() / f"bench-memory-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    out.print(f"saved: {path}")


@bench_app.command("noise")
@user_errors
def bench_noise(
    scenario: Path = typer.Argument(Path("scenarios/quick.yaml"), help="Scenario to repeat."),
    engine: str = typer.Option("baseline", help="The engine whose repeat-to-repeat spread is measured (all: every engine of --from-run)."),
    repeat: int = typer.Option(5, min=2, help="Repeats (5 or more: fewer give a band that is itself noise)."),
    from_run: Optional[Path] = typer.Option(None, "--from-run", help="Take the repeats of a run folder that "
                                            "already holds them (`harness run --repeat 5`) instead of running; "
                                            "--engine all takes every engine's, and per figure the widest band."),
    bootstrap_servers: Optional[str] = BootstrapOpt,
    postgres_dsn: Optional[str] = DsnOpt,
) -> None:
    """The repeat-to-repeat spread of every ranked figure on this machine: the noise band single runs are judged
    against.

    Runs SCENARIO with one engine --repeat times (as `harness run --engines ENGINE --repeat N`), then per figure
    (max - min) / |median| over the repeats. Saved to results/bench-noise-<time>.json and
    results/bench-noise-latest.json, which reports read; nothing is asserted.
    """
    from harness.bench.noise import from_run as summarise_folder, measure, save, table_rows
    from harness.run import RunHooks

    if from_run is not None:
        res, run_dir = summarise_folder(from_run, engine), from_run
    else:
        if engine == "all":
            raise HarnessError("--engine all needs --from-run (a new run measures one engine)")
        res, run_dir = measure(scenario, engine, repeat, bootstrap=bootstrap_servers, dsn=postgres_dsn,
                               hooks=RunHooks(message=say))
    table = Table(title=f"noise band: {engine} on {res['scenario']}, {res['repeats']} measured repeats "
                        f"({res['method']})")
    for col in ("figure", "unit", "per repeat", "band"):
        table.add_column(col, overflow="fold")
    for row in table_rows(res):
        table.add_row(*row)
    out.print(table)
    dated, latest = save(res)
    out.print(f"run: {run_dir}\nsaved: {dated}\nlatest (read by reports): {latest}")


def main() -> None:  # pragma: no cover - console entry for `python -m harness`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

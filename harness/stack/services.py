"""Which broker and database a command uses: external ones when given, else the embedded stack."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from harness.stack import probes
from harness.stack.embedded import EmbeddedStack, Progress, _silent

ENV_BOOTSTRAP = "HARNESS_BOOTSTRAP_SERVERS"
ENV_DSN = "HARNESS_POSTGRES_DSN"


@dataclass
class Services:
    bootstrap: str
    dsn: str
    external: list[str] = field(default_factory=list)  # "kafka" and/or "postgres" given from outside
    started_here: list[str] = field(default_factory=list)  # embedded services this command started
    owned_pids: list[int] = field(default_factory=list)  # processes of the embedded stack
    service_pids: dict[str, int] = field(default_factory=dict)  # "kafka"/"postgres" -> embedded service's main pid
    stack: EmbeddedStack | None = None  # the embedded stack, for faults that restart one of its services


def choose(option: str | None, env: str, scenario_value: str | None) -> str | None:
    """Precedence: command-line option, then environment, then the scenario file."""
    return option or os.environ.get(env) or scenario_value or None


@contextmanager
def services(bootstrap: str | None = None, dsn: str | None = None, *, scenario_bootstrap: str | None = None,
             scenario_dsn: str | None = None, progress: Progress = _silent,
             stack: EmbeddedStack | None = None) -> Iterator[Services]:
    """Yield reachable services. Embedded ones this call had to start are stopped again on exit."""
    ext_bootstrap = choose(bootstrap, ENV_BOOTSTRAP, scenario_bootstrap)
    ext_dsn = choose(dsn, ENV_DSN, scenario_dsn)
    if ext_bootstrap:
        probes.check_reachable_kafka(ext_bootstrap)
    if ext_dsn:
        probes.check_reachable_postgres(ext_dsn)
    stack = stack or EmbeddedStack()
    need_kafka = not ext_bootstrap and not stack.kafka_running()
    need_pg = not ext_dsn and not stack.postgres_running()
    started = [name for name, needed in (("kafka", need_kafka), ("postgres", need_pg)) if needed]
    if started:
        progress(f"embedded stack not running: starting {' and '.join(started)} for this command")
        stack.up(kafka=need_kafka, postgres=need_pg, progress=progress)
    external = [n for n, v in (("kafka", ext_bootstrap), ("postgres", ext_dsn)) if v]
    try:
        yield Services(
            bootstrap=ext_bootstrap or str(stack.bootstrap),
            dsn=ext_dsn or str(stack.dsn),
            external=external,
            started_here=started,
            owned_pids=stack.pids(),
            service_pids=stack.service_pids(only=[n for n in ("kafka", "postgres") if n not in external]),
            stack=stack,
        )
    finally:
        if started:
            progress(f"stopping the {' and '.join(started)} this command started")
            stack.down(only=started)

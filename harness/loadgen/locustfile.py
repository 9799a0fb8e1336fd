"""A Locust file that sends a scenario's load from many producers: each Locust user is one shard
(`harness load --shard i/N`, harness/run/shard.py) and runs that shard's open-loop schedule once.

Locust orchestrates and collects statistics; it does not set the rate (no LoadTestShape): the schedule does.
Inside gevent the generator is cooperative, produce() and poll(0) only, never a blocking flush().

Configured by environment (`harness load --locust-workers N` sets it; on several machines set it yourself and
start `locust -f harness/loadgen/locustfile.py --master` and one `--worker` per machine, docs/cluster.md):
HARNESS_LOCUST_SCENARIO (a scenario file), HARNESS_LOCUST_TOPIC, HARNESS_LOCUST_TIME_BASE (epoch ms, shared),
HARNESS_LOCUST_HEARTBEAT_UNTIL (epoch ms; default: the last window's close), HARNESS_LOCUST_SHARDS (N: one user
per worker, the worker's index is its shard), HARNESS_BOOTSTRAP_SERVERS, and HARNESS_LOCUST_OUT (each shard
writes shard-<i>/shard.json, its ground truth and its figures for the harness there: ShardFiles; a file
shard-<i>/stop ends its heartbeats, and so does the end of HARNESS_LOCUST_PARENT_PID, the harness that started it).
"""

from __future__ import annotations

import os
from pathlib import Path

from locust import User, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

from harness.loadgen.generator import Shard
from harness.run.planning import close_horizon_ms
from harness.run.shard import ShardFiles, run_shard
from harness.scenario import load_scenario


class ShardUser(User):
    """One shard: the user's worker index is the shard's index."""

    def wait_time(self) -> float:
        return 0.0

    @task
    def send_shard(self) -> None:
        runner = self.environment.runner
        index = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        count = int(os.environ["HARNESS_LOCUST_SHARDS"])
        scenario = load_scenario(os.environ["HARNESS_LOCUST_SCENARIO"])
        tb = int(os.environ["HARNESS_LOCUST_TIME_BASE"])
        out = Path(os.environ["HARNESS_LOCUST_OUT"]) / f"shard-{index}"
        until = int(os.environ.get("HARNESS_LOCUST_HEARTBEAT_UNTIL") or tb + close_horizon_ms(scenario))
        out.mkdir(parents=True, exist_ok=True)
        parent = int(os.environ.get("HARNESS_LOCUST_PARENT_PID") or 0) or None
        try:
            fig = run_shard(scenario, os.environ["HARNESS_BOOTSTRAP_SERVERS"], os.environ["HARNESS_LOCUST_TOPIC"], tb,
                            Shard(index, count), heartbeat_until_ms=until, out=out, cooperative=True,
                            files=ShardFiles(out, parent_pid=parent))
        except Exception as exc:  # reported to the master like a failed request, and to the harness
            ShardFiles(out).write(ShardFiles(out).error, f"{type(exc).__name__}: {exc}".encode())
            events.request.fire(request_type="shard", name=f"{index}/{count}", response_time=0, response_length=0,
                                exception=exc, context={})
            raise StopUser() from exc
        # one entry per shard in Locust's statistics: the response time is the shard's send-delay p99 (ms), the
        # length its events; the full figures are in shard.json
        events.request.fire(request_type="shard", name=f"{index}/{count}",
                            response_time=fig["send_delay_ms"].get("p99") or 0, response_length=fig["events_sent"],
                            exception=None, context={})
        raise StopUser()

"""The load generator in a process of its own.

In the harness process the generator shared the GIL with the monitor, which samples engines and PostgreSQL
every 0.5 s: on two cores its send-delay p99 reached 38.8 ms during a Flink run. Here LoadGenerator.run runs
in a child started with `spawn` (never fork: librdkafka's threads do not survive it), which builds its own
event model and producer and warms the producer up before the parent picks the time base, so process start-up
never eats into the schedule.

The parent sees the surface it used from the thread: `stats` (a SendStats whose counters the child refreshes
every PROGRESS_S, replaced by the child's own once every event is handed over and again at the end),
`load_done`, `stop`, `encoder` and run(). The child stops by itself when its parent disappears, and is in the
process registry while it runs, so `harness stack down` can stop one a killed harness left behind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np

from harness.errors import EXIT_FAILED, HarnessError
from harness.loadgen.encoding import JsonEncoder
from harness.loadgen.generator import LoadGenerator, Progress, SendStats
from harness.loadgen.priority import raise_priority
from harness.scenario import Scenario
from harness.stack import processes

PROGRESS_S = 0.1          # how stale the parent's live counters may be (the monitor samples every 0.5 s)
START_TIMEOUT_S = 90.0    # spawn, imports, model, producer and its warm-up
LIVE_FIELDS = ("sent", "acked", "delivery_errors", "last_error", "heartbeats_sent", "heartbeats_acked",
               "last_ack_ms")


class GeneratorProcess:
    def __init__(self, scenario: Scenario, bootstrap: str, topic: str, *, owner: dict[str, str] | None = None) -> None:
        self.scenario, self.bootstrap, self.topic, self.owner = scenario, bootstrap, topic, owner or {}
        self.encoder = JsonEncoder(scenario.load.payload_bytes, scenario.topic.max_message_bytes)
        self._ctx = mp.get_context("spawn")
        self.stop = SharedFlag(self._ctx)
        self.load_done = threading.Event()   # set once the child's figures for every sent event are here
        self.stats: SendStats | None = None
        self.pid: int | None = None
        self._pipe: Any = None
        self._proc: Any = None

    def warm_up(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the child and wait until its producer is connected and warm."""
        parent, child = self._ctx.Pipe()
        self._pipe = parent
        self._proc = self._ctx.Process(target=_child_main, name=f"generator-{self.topic}", daemon=True,
                                       args=(self.scenario, self.bootstrap, self.topic, child, self.stop))
        self._proc.start()
        child.close()
        self.pid = self._proc.pid
        processes.register(self.pid, "load generator", **self.owner)
        if not self._pipe.poll(timeout):
            self.terminate()
            raise HarnessError(f"the load generator for {self.topic} did not start within {timeout:g} s",
                               exit_code=EXIT_FAILED)
        kind, payload = self._receive()
        if kind != "ready":
            self.terminate()
            raise HarnessError(f"the load generator for {self.topic} failed to start: {payload}", exit_code=EXIT_FAILED)

    def run(self, time_base_ms: int, *, heartbeat_until_ms: int | None = None, paced: bool = True,
            progress: Progress | None = None) -> SendStats:
        """Send the load from time_base_ms (unpaced: as fast as it can, as a backlog is filled); returns the
        child's final figures. Blocks (call it on a thread)."""
        self._pipe.send((time_base_ms, heartbeat_until_ms, paced))
        self.stats = SendStats(scheduled=0, time_base_ms=time_base_ms, handoff_ms=np.zeros(0, dtype=np.int64),
                               send_delay_ms=np.zeros(0))
        try:
            while True:
                if not self._pipe.poll(0.5):
                    if not self._proc.is_alive():
                        raise HarnessError(f"the load generator for {self.topic} exited with code "
                                           f"{self._proc.exitcode} before it finished", exit_code=EXIT_FAILED)
                    continue
                kind, payload = self._receive()
                if kind == "live":
                    self.stats.scheduled = payload.pop("scheduled")
                    for k, v in payload.items():
                        setattr(self.stats, k, v)
                    if progress:
                        progress(self.stats)
                elif kind == "loaded":
                    self.stats = payload
                    self.load_done.set()
                elif kind == "done":
                    self.stats = payload
                    self.load_done.set()
                    if progress:
                        progress(payload)
                    return payload
                elif kind == "error":
                    raise HarnessError(f"the load generator failed: {payload}", exit_code=EXIT_FAILED)
        finally:
            self.load_done.set()
            self._join(10)

    def _receive(self) -> tuple[str, Any]:
        try:
            msg: tuple[str, Any] = self._pipe.recv()
            return msg
        except EOFError:
            return "error", f"the process ended (exit code {self._proc.exitcode})"

    def _join(self, timeout: float) -> None:
        if self._proc is None:
            return
        self._proc.join(timeout)
        if self._proc.is_alive():
            self.terminate()
        if self.pid is not None:
            processes.unregister(self.pid)

    def terminate(self) -> None:
        """Stop the child now (it flushes nothing): for start-up failures and a stop that did not end it."""
        self.stop.set()
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        if self.pid is not None:
            processes.unregister(self.pid)

    def close(self, timeout: float = 60) -> None:
        """Ask the child to stop, and make sure it has gone."""
        self.stop.set()
        self._join(timeout)


class SharedFlag:
    """A stop flag both processes see. Not multiprocessing.Event: its set() waits for every sleeping waiter to
    acknowledge the wake-up, and a child that exited inside wait() never does, so the parent's set() hung."""

    def __init__(self, ctx: Any) -> None:
        self._v = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._v.value = 1

    def is_set(self) -> bool:
        return bool(self._v.value)


# -- the child -----------------------------------------------------------------------------------------------
class _LoadDone:
    """Stands in for the generator's load_done event: setting it sends the figures of every sent event."""

    def __init__(self, gen: LoadGenerator, send: Callable[[tuple[str, Any]], None]) -> None:
        self._gen, self._send, self._set = gen, send, False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._send(("loaded", self._gen.stats))

    def is_set(self) -> bool:
        return self._set


def _child_main(scenario: Scenario, bootstrap: str, topic: str, pipe: Any, stop_event: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the load stops, through stop_event
    nice = raise_priority()
    lock = threading.Lock()

    def send(msg: tuple[str, Any]) -> None:
        with lock:
            pipe.send(msg)

    try:
        gen = LoadGenerator(scenario, bootstrap, topic)
        gen.nice = nice
        gen.warm_up()
        _watch(stop_event, gen.stop, os.getppid())
        gen.load_done = _LoadDone(gen, send)  # type: ignore[assignment]
        send(("ready", os.getpid()))
        while not pipe.poll(0.2):
            if gen.stop.is_set():   # stopped (or orphaned) before the load began
                return
        time_base_ms, until, paced = pipe.recv()

        def live(st: SendStats) -> None:
            send(("live", {"scheduled": st.scheduled, **{k: getattr(st, k) for k in LIVE_FIELDS}}))

        stats = gen.run(time_base_ms, heartbeat_until_ms=until, paced=paced, progress=live,
                        progress_every_s=PROGRESS_S)
        send(("done", stats))
    except BaseException:  # the parent turns this into a HarnessError with the message
        try:
            send(("error", traceback.format_exc(limit=5).strip().splitlines()[-1]))
        except OSError:
            pass


def _watch(stop_event: "SharedFlag", local_stop: threading.Event, parent_pid: int) -> None:
    """Mirror the parent's stop into the generator's own event, and stop when the parent is gone."""
    def loop() -> None:
        while not local_stop.is_set():
            if stop_event.is_set() or os.getppid() != parent_pid:
                local_stop.set()
            else:
                time.sleep(0.1)
        if os.getppid() != parent_pid:
            time.sleep(5)       # the producer's final flush, then leave even if it is stuck
            os._exit(3)

    threading.Thread(target=loop, name="stop-watch", daemon=True).start()

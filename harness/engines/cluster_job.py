"""What engines whose job may run on a cluster the engine started share (a driver or client process, plus a
local session or standalone cluster's JVMs): the lifecycle half of the Protocol around both."""

from __future__ import annotations

from typing import Any, Protocol

from harness.engines.launcher import JobProcess
from harness.engines.protocol import EngineBase, S


class LocalCluster(Protocol):
    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


class ClusterJobEngine(EngineBase[S]):
    job: JobProcess
    cluster: Any = None                  # a LocalCluster once start() started one
    stop_grace_s: float = 30             # the job cancels or stops its query on SIGTERM; let it

    def alive(self) -> bool:
        return self.job.alive()

    def pids(self) -> list[int]:
        return self.job.pids() + (self.cluster.pids() if self.cluster else [])

    def stop(self) -> None:
        """The job first (a remote job is cancelled, a driver stops its query), then what outlived it in the
        job's session, then the cluster."""
        self.job.stop(grace_s=self.stop_grace_s)
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

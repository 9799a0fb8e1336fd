"""Start long-lived service processes detached from the harness, and stop them by PID file with no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil


# A shell in its own session starts the service in the background and exits at once: the service is then
# nobody's child here, so it outlives the harness, and when it stops the system reaps it. As the child of a
# harness that restarted it (restart_broker) it would stay a zombie until that harness exits.
_DETACH = 'log="$1"; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'


def spawn_detached(cmd: list[str], log_file: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Start cmd in a session of its own, not as a child of this process; stdout and stderr go to log_file.
    Returns its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["/bin/sh", "-c", _DETACH, "sh", str(log_file), *cmd], cwd=cwd, env=env,
                         start_new_session=True, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=30)
    last = out.stdout.strip().splitlines()[-1:] if out.returncode == 0 else []
    if not last or not last[0].isdigit():
        raise OSError(f"could not start {cmd[0]}: {out.stderr.strip() or out.stdout.strip() or out.returncode}")
    return int(last[0])


def alive(pid: int | None, marker: str | None = None) -> bool:
    """True when pid runs and, if a marker is given, its command line contains it (guards against PID reuse)."""
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return marker is None or marker in " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def with_children(pids: list[int]) -> list[psutil.Process]:
    """The processes and all their descendants, as they are now."""
    out: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            out += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return out


def terminate_tree(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process and its children, then SIGKILL whatever is left after timeout."""
    procs = with_children([pid])
    if not procs:
        return
    terminate_all(procs, timeout)
    # Reap our own child if we started it in this process.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate_all(procs: list[psutil.Process], timeout: float = 20.0) -> None:
    """SIGTERM each process still running (psutil checks it is the same process, not a reused PID), then
    SIGKILL whatever is left after timeout. A zombie has already exited: nothing to signal or wait for."""
    procs = [p for p in procs if _running(p)]
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    still = _wait_exited(procs, timeout)
    for p in still:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_exited(still, 5)


def _wait_exited(procs: list[psutil.Process], timeout: float, reap_grace: float = 2.0) -> list[psutil.Process]:
    """Wait until each process has exited; returns those still running after timeout. A zombie has exited:
    psutil.wait_procs would wait for it until its parent reaps it, the whole timeout when that parent is
    another live process."""
    deadline = time.monotonic() + timeout
    still = [p for p in procs if _running(p)]
    while still and time.monotonic() < deadline:
        time.sleep(0.05)
        still = [p for p in still if _running(p)]
    # An orphan's zombie is reaped by init, a moment later: wait for that briefly, so a caller that returns
    # leaves no entry behind in the process table.
    reap_by = time.monotonic() + reap_grace
    while time.monotonic() < reap_by and any(psutil.pid_exists(p.pid) and p not in still for p in procs):
        time.sleep(0.05)
    return still


def kill_all(procs: list[psutil.Process], timeout: float = 10.0) -> list[int]:
    """SIGKILL each process still running, at once and without warning (a crash, not a stop); returns the pids
    killed, once they are gone."""
    procs = [p for p in procs if _running(p)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _wait_exited(procs, timeout, reap_grace=0)   # a crash: the restart must not wait for the reaping
    return [p.pid for p in procs]


def pids_from_files(pid_dir: Path, name_part: str = "") -> list[int]:
    """Live processes named in the *.pid files of a folder (Flink's and Spark's daemon scripts write them);
    name_part: only the files whose name holds it."""
    out = []
    for f in pid_dir.glob(f"*{name_part}*.pid" if name_part else "*.pid"):
        for word in f.read_text().split():
            if word.isdigit() and alive(int(word)):
                out.append(int(word))
    return out


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


# -- the process registry ---------------------------------------------------------------------------------
# Every process an engine's launcher or a session cluster starts is recorded in <stack dir>/processes/<pid>.json
# with its start time (psutil's create_time), so a harness killed with SIGKILL leaves a list of what it owned:
# `harness stack status` shows it and `harness stack down` stops it. An entry names a process by pid *and*
# create_time: a pid the kernel has since given to another process never matches, and is never signalled.


def _registry() -> Path:
    from harness import paths

    return paths.process_registry_dir()


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def register(pid: int, what: str, **owner: str | None) -> float | None:
    """Record pid (still running) in the registry; owner: e.g. run_id and load_id. Returns its create_time
    (None: it had already exited and nothing was recorded)."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            entry = {"pid": pid, "create_time": p.create_time(), "cmdline": p.cmdline(), "what": what,
                     "pgid": os.getpgid(pid), **{k: v for k, v in owner.items() if v is not None}}
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None
    d = _registry()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{pid}.json.tmp"
    tmp.write_text(json.dumps(entry, indent=2))
    tmp.replace(d / f"{pid}.json")
    return float(entry["create_time"])


class ClusterRegistrations:
    """The JVMs a local cluster's scripts started (not children of the harness), recorded in the registry
    under one name and owner until the cluster has stopped them."""

    def __init__(self, what: str, owner: dict[str, str] | None = None) -> None:
        self.what, self.owner = what, owner or {}
        self.pids: set[int] = set()

    def add(self, pids: list[int]) -> None:
        for pid in set(pids) - self.pids:
            register(pid, self.what, **self.owner)
            self.pids.add(pid)

    def release(self) -> None:
        """Drop the entries of the JVMs that are gone; one still running stays listed for `stack down`."""
        for pid in [p for p in self.pids if not alive(p)]:
            unregister(pid)
            self.pids.discard(pid)


def unregister(pid: int) -> None:
    (_registry() / f"{pid}.json").unlink(missing_ok=True)


def registered() -> list[dict[str, Any]]:
    """Every registry entry, oldest first; `alive` says whether the very process it names still runs."""
    out = []
    for f in _registry().glob("*.json"):
        try:
            entry = json.loads(f.read_text())
            int(entry["pid"]), float(entry["create_time"])
        except (OSError, ValueError, KeyError, TypeError):
            f.unlink(missing_ok=True)  # unreadable: nothing it names can be checked, so nothing to stop
            continue
        entry["alive"] = _registered_process(entry) is not None
        out.append(entry)
    return sorted(out, key=lambda e: e["create_time"])


def _registered_process(entry: dict[str, Any]) -> psutil.Process | None:
    try:
        p = psutil.Process(int(entry["pid"]))
        if abs(p.create_time() - float(entry["create_time"])) > 0.05 or not _running(p):
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def group_members(pgid: int, since: float) -> list[psutil.Process]:
    """Processes in process group pgid created at or after `since` (a create_time), except this process's own
    group: what is left of a job that was started in its own session (start_new_session: pgid = its pid)."""
    if pgid <= 1 or pgid == os.getpgrp():
        return []
    out = []
    for p in psutil.process_iter(["pid", "create_time"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["create_time"] >= since - 0.05 and _running(p):
                out.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            continue
    return out


def stop_registered(timeout: float = 30.0) -> list[dict[str, Any]]:
    """Stop every registered process that still runs, with its process tree and (for a process that leads its
    own group) its process group; remove every entry. Newest first: a job before the cluster it runs on, so a
    job can still cancel itself there. Returns the entries that were running."""
    entries = registered()
    for entry in reversed(entries):
        procs: list[psutil.Process] = []
        p = _registered_process(entry)
        if p is not None:
            procs += with_children([p.pid])
        if entry.get("pgid") == entry["pid"]:
            procs += group_members(int(entry["pid"]), float(entry["create_time"]))
        unique = {q.pid: q for q in procs}
        if unique:
            terminate_all(list(unique.values()), timeout)
        unregister(int(entry["pid"]))
    return [e for e in entries if e["alive"]]

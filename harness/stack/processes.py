"""Start long-lived service processes detached from the harness, and stop them by PID file with no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil


def spawn_detached(cmd: list[str], log_file: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Start cmd in its own session so it outlives `harness stack up`; stdout and stderr go to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True,
        )
    return proc.pid


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
    _, still = psutil.wait_procs(procs, timeout=timeout)
    for p in still:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(still, timeout=5)


def pids_from_files(pid_dir: Path) -> list[int]:
    """Live processes named in the *.pid files of a folder (Flink's and Spark's daemon scripts write them)."""
    out = []
    for f in pid_dir.glob("*.pid"):
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

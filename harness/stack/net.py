"""Ports and TCP reachability on the loopback interface."""

from __future__ import annotations

import socket
import time

from harness.errors import HarnessError

HOST = "127.0.0.1"


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def require_free(port: int, what: str, option: str) -> None:
    if not 1 <= port <= 65535:
        raise HarnessError(f"{what} port {port} is not a TCP port (allowed: 1-65535)")
    if port_in_use(port):
        raise HarnessError(
            f"port {port} for {what} is already in use on {HOST}",
            hint=f"choose another with {option}, leave it out to pick a free port, or stop what listens there",
        )


def can_connect(host: str, port: int, timeout: float = 2.0) -> str | None:
    """None when a TCP connection opens, else the reason it did not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    address = address.strip()
    if "://" in address:
        address = address.split("://", 1)[1]
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    try:
        return host, int(port) if port else default_port
    except ValueError as exc:
        raise HarnessError(f"'{address}' is not host:port") from exc


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

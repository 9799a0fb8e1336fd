"""What each engine needs before it can run, and the setup that provides it (`harness setup`).

An engine states its needs with its folder (discovery.engine_folder) and one class attribute, never by its name:

    <folder>/pom.xml            its JVM dependencies. The setup runs
                                `mvn -q -B -f <folder>/pom.xml generate-resources -Djars.dir=<dir>`, whose
                                copy-dependencies execution puts the jars in <dir>; they end up in
                                .cache/jars/<name>/, where `jvm.jars(name)` finds them.
    <folder>/requirements.txt   its Python requirements.
    environment = "shared"      (the default) the requirements go into the harness's own environment: one pip call
                                for every shared engine together with the harness's own pins (pyproject.toml), so
                                pip resolves them all at once and a conflict is an error, not a silent downgrade.
    environment = "own"         the setup builds .cache/envs/<name> (python -m venv, pip install -r
                                requirements.txt) and links the harness's package and the engine's own top-level
                                package into it, without their dependencies: list everything the job imports in
                                requirements.txt. The engine starts its job with `job_python(type(self))`.

The stack's Kafka broker is set up like an engine's jars, from jvm/kafka/pom.xml into .cache/jars/kafka.

Every step is idempotent: it records a digest of its inputs (the files' contents, the command, the target) in a
stamp, and is skipped while the stamp holds the same digest. The jars' stamp lives in their folder and an own
environment's in the environment, so deleting either redoes the step; the shared step's stamp lives in the
harness's venv, so a fresh venv gets its requirements again. Maven copies into a staging folder first, so a failed
download leaves the jars that were there; identical jars are left in place (a running broker keeps its files).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from harness import paths
from harness.errors import HarnessError

STAMP = ".setup-stamp"
ENVS_DIR_ENV = "HARNESS_ENVS_DIR"
STACK_POM = Path("jvm") / "kafka" / "pom.xml"


def envs_dir() -> Path:
    """Own environments, one folder per engine (HARNESS_ENVS_DIR, default .cache/envs)."""
    value = os.environ.get(ENVS_DIR_ENV)
    return Path(value).resolve() if value else paths.PROJECT_ROOT / ".cache" / "envs"


@dataclass(frozen=True)
class Needs:
    """What one engine folder (or the stack) needs from the setup."""

    name: str
    kind: Literal["engine", "stack"]
    folder: Path
    environment: Literal["shared", "own"] = "shared"
    pom: Path | None = None
    requirements: Path | None = None
    packages: tuple[str, ...] = ()       # top-level packages an own environment links in (harness, the engine's)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def engine_needs(cls: type) -> Needs:
    """An engine's needs, from its folder and its `environment` attribute."""
    from harness.engines.discovery import engine_folder

    folder = engine_folder(cls)
    environment = getattr(cls, "environment", "shared")
    if environment not in ("shared", "own"):
        raise HarnessError(f"engine {cls.name}: environment is {environment!r}; it is \"shared\" or \"own\"")
    pom, req = folder / "pom.xml", folder / "requirements.txt"
    return Needs(cls.name, "engine", folder, environment, pom if pom.is_file() else None,
                 req if req.is_file() else None, ("harness", cls.__module__.split(".")[0]))


def stack_needs() -> list[Needs]:
    pom = paths.PROJECT_ROOT / STACK_POM
    return [Needs("kafka", "stack", pom.parent, pom=pom)] if pom.is_file() else []


def all_needs(engines: dict[str, type] | None = None) -> list[Needs]:
    """The stack's needs, then every discovered engine's (or those given), by name."""
    if engines is None:
        from harness.engines.discovery import discover

        engines = discover()
    return stack_needs() + [engine_needs(cls) for _, cls in sorted(engines.items())]


def env_python(name: str) -> Path:
    return envs_dir() / name / "bin" / "python"


def job_python(cls: type) -> str:
    """The interpreter an engine's job runs with: the harness's own for "shared", .cache/envs/<name>'s for "own"."""
    if getattr(cls, "environment", "shared") != "own":
        return sys.executable
    py = env_python(cls.name)
    if not py.exists():
        raise HarnessError(f"engine {cls.name} runs in its own environment, and {py.parent.parent} is not built",
                           hint="run `harness setup` (or `make setup`)")
    return str(py)


# -- the plan -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One thing the setup does: install the shared requirements, build an own environment, or fetch jars."""

    action: Literal["shared", "own", "jars"]
    needs: tuple[Needs, ...]
    files: tuple[Path, ...]
    commands: tuple[tuple[str, ...], ...]   # what runs, in order (own: the venv, then pip)
    target: Path                            # what it fills: a venv, a jars folder
    stamp: Path
    digest: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        if self.action == "shared":
            return "shared requirements (" + ", ".join(n.label for n in self.needs) + ")"
        return f"{self.needs[0].label}: " + ("own environment" if self.action == "own" else "jars")

    def up_to_date(self) -> bool:
        try:
            return self.stamp.read_text().strip() == self.digest
        except OSError:
            return False

    def shown(self) -> list[str]:
        """The commands as printed: paths relative to the project, the harness's pins summarised."""
        def one(cmd: tuple[str, ...]) -> str:
            pins = [w for w in cmd if self.action == "shared" and "==" in w and not w.startswith("-")]
            words = [_rel(w) for w in cmd if w not in pins]
            if pins:
                words.insert(words.index("-q") + 1, f"<the harness's {len(pins)} pins>")
            return " ".join(words)
        return [one(c) for c in self.commands]


def _rel(word: str) -> str:
    root = str(paths.PROJECT_ROOT) + os.sep
    return word.replace(root, "") if root in word else word


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.read_bytes() if isinstance(p, Path) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def harness_pins() -> list[str]:
    """The harness's own requirements (no extras): from pyproject.toml in a source tree, else its metadata."""
    pyproject = paths.PROJECT_ROOT / "pyproject.toml"
    if pyproject.is_file():
        return list(tomllib.loads(pyproject.read_text())["project"].get("dependencies", []))
    try:
        reqs = importlib.metadata.requires("stream-harness") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [r for r in reqs if "extra ==" not in r]


def _shared_stamp() -> Path:
    if sys.prefix != sys.base_prefix:        # a venv: the stamp goes with it
        return Path(sys.prefix) / ".harness-setup-shared"
    return paths.PROJECT_ROOT / ".cache" / "setup-shared.stamp"


def plan(needs: list[Needs] | None = None) -> list[Step]:
    """The steps for these needs (default: the stack's and every discovered engine's), in the order they run."""
    needs = all_needs() if needs is None else needs
    steps: list[Step] = []
    shared = [n for n in needs if n.requirements and n.environment == "shared"]
    if shared:
        pins = harness_pins()
        files = tuple(n.requirements for n in shared if n.requirements)
        cmd = (sys.executable, "-m", "pip", "install", "-q", *pins, *[a for f in files for a in ("-r", str(f))])
        steps.append(Step("shared", tuple(shared), files, (cmd,), Path(sys.prefix), _shared_stamp(),
                          _digest(*cmd, *files)))
    for n in needs:
        if n.requirements and n.environment == "own":
            env = envs_dir() / n.name
            cmds = ((sys.executable, "-m", "venv", str(env)),
                    (str(env / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(n.requirements)))
            steps.append(Step("own", (n,), (n.requirements,), cmds, env, env / STAMP,
                              _digest(*cmds[0], *cmds[1], n.requirements, *n.packages)))
    for n in needs:
        if n.pom:
            jars = paths.jars_dir() / n.name
            cmd = ("mvn", "-q", "-B", "-f", str(n.pom), "generate-resources", f"-Djars.dir={_staging(jars)}")
            steps.append(Step("jars", (n,), (n.pom,), (cmd,), jars, jars / STAMP, _digest(*cmd, n.pom)))
    return steps


def _staging(jars: Path) -> Path:
    return jars.parent / f".{jars.name}.new"


# -- running it ---------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    step: Step
    status: Literal["done", "up to date", "would run"]


def run(steps: list[Step], *, dry_run: bool = False, force: bool = False,
        progress: Callable[[str], None] = lambda _m: None) -> list[Outcome]:
    """Run the steps that are not up to date (all with force); with dry_run only say which would run."""
    outcomes = []
    for step in steps:
        if not force and step.up_to_date():
            outcomes.append(Outcome(step, "up to date"))
        elif dry_run:
            outcomes.append(Outcome(step, "would run"))
        else:
            progress(f"{step.label}: " + " && ".join(step.shown()))
            {"shared": _run_shared, "own": _run_own, "jars": _run_jars}[step.action](step)
            step.stamp.parent.mkdir(parents=True, exist_ok=True)
            step.stamp.write_text(step.digest + "\n")
            outcomes.append(Outcome(step, "done"))
    return outcomes


def _call(step: Step, cmd: tuple[str, ...] | list[str]) -> None:
    tool = next((w for w in ("pip", "venv") if w in cmd), Path(cmd[0]).name)
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise HarnessError(f"setup of {_who(step)} needs `{cmd[0]}`, which is not on PATH",
                           hint="install Maven (apt-get install maven) and a JDK 17+" if cmd[0] == "mvn" else None)
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, cwd=paths.PROJECT_ROOT)
    except OSError as exc:
        raise HarnessError(f"setup of {_who(step)}: `{cmd[0]}` could not start: {exc}") from None
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-20:])
        files = ", ".join(_rel(str(f)) for f in step.files)
        raise HarnessError(f"setup of {_who(step)} failed: {tool} exited with {res.returncode} on {files}\n"
                           f"  command: {' '.join(_rel(c) for c in cmd)}\n{tail}",
                           hint=f"fix {files} (or the network), then run `harness setup` again")


def _who(step: Step) -> str:
    return ", ".join(n.label for n in step.needs)


def _run_shared(step: Step) -> None:
    _call(step, step.commands[0])


def _run_own(step: Step) -> None:
    (n,) = step.needs
    if step.target.exists():                 # rebuilt from scratch: a removed requirement leaves nothing behind
        shutil.rmtree(step.target)
    for cmd in step.commands:
        _call(step, cmd)
    py = str(step.target / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for pkg in dict.fromkeys(n.packages):    # the harness and the engine's package, without their dependencies
        src = paths.package_dir(pkg)
        if src is None:
            raise HarnessError(f"setup of {n.label}: package {pkg!r} not found to link into {step.target}")
        link = Path(site) / pkg
        if not link.exists():
            link.symlink_to(src, target_is_directory=True)


def _run_jars(step: Step) -> None:
    jars, staging = step.target, _staging(step.target)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _call(step, step.commands[0])
        if not any(staging.glob("*.jar")):
            raise HarnessError(f"setup of {_who(step)}: Maven copied no jars from {_rel(str(step.files[0]))}",
                               hint="its copy-dependencies execution must write to ${jars.dir}")
        if _same_jars(staging, jars):        # nothing changed: leave the files a running JVM may hold open
            return
        old = jars.parent / f".{jars.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if jars.exists():
            jars.rename(old)
        staging.rename(jars)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _same_jars(a: Path, b: Path) -> bool:
    if not b.is_dir():
        return False
    names = sorted(p.name for p in a.glob("*.jar"))
    if names != sorted(p.name for p in b.glob("*.jar")):
        return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)

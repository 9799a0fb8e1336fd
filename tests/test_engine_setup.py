"""The setup asks every discovered engine what it needs: a throwaway engine folder outside the project, with a
pom.xml and a requirements.txt, is planned like the shipped ones (no network: a dry run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from harness.engines import requirements
from harness.engines.discovery import discover

ENGINE_PY = '''from pipelines.baseline.engine import BaselineEngine


class ToyEngine(BaselineEngine):
    name = "toy"
    description = "a folder with its own jars and Python requirements"
    environment = "{environment}"


ENGINE = ToyEngine
'''


def _engine(root: Path, environment: str) -> Path:
    folder = root / "toy"
    folder.mkdir(parents=True)
    (folder / "engine.py").write_text(ENGINE_PY.format(environment=environment))
    (folder / "pom.xml").write_text("<project/>")
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    return folder


@pytest.mark.parametrize("environment", ["shared", "own"])
def test_plugin_folder_needs_are_planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    folder = _engine(tmp_path / f"engines-{environment}", environment)
    monkeypatch.setenv("HARNESS_ENGINE_PATH", str(folder.parent))
    monkeypatch.setenv("HARNESS_JARS_DIR", str(tmp_path / "jars"))
    monkeypatch.setenv("HARNESS_ENVS_DIR", str(tmp_path / "envs"))
    found = discover()
    assert list(found) == ["toy"]
    [needs] = [n for n in requirements.all_needs(found) if n.name == "toy"]
    assert needs.pom == folder / "pom.xml" and needs.requirements == folder / "requirements.txt"
    assert needs.environment == environment
    steps = requirements.plan([needs])
    shown = "\n".join(c for s in steps for c in s.shown())
    assert str(folder / "pom.xml") in shown or "toy/pom.xml" in shown
    assert "requirements.txt" in shown
    if environment == "own":
        assert str(tmp_path / "envs") in shown or "envs/toy" in shown
    outcomes = requirements.run(steps, dry_run=True)
    assert outcomes and all(o.status == "would run" for o in outcomes)
    assert not (tmp_path / "jars").exists() and not (tmp_path / "envs").exists()  # a dry run changes nothing


def test_setup_dry_run_names_every_shipped_engine() -> None:
    r = run_cli("setup", "--dry-run")
    assert r.returncode == 0, r.stderr
    for name in discover():
        assert name in r.stdout, r.stdout

from conftest import run_cli


def test_help_lists_subcommands() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("run", "stack", "bench", "scenario"):
        assert cmd in r.stdout


def test_bad_option_exits_2() -> None:
    r = run_cli("stack", "up", "--kafka-port", "notaport")
    assert r.returncode == 2
    assert "kafka-port" in r.stderr

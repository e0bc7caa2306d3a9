"""jarvisctl against the real daemon: commands, --json, exit codes, light imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, ctl

from jarvisd.cli import resolve_socket

pytestmark = pytest.mark.serial
Start = Callable[..., DaemonProcess]


def test_status_table_and_json(start_daemon: Start) -> None:
    daemon = start_daemon()
    table = ctl(daemon, "status")
    assert table.returncode == 0, table.stderr
    assert "running" in table.stdout and "memory_sample" in table.stdout
    as_json = ctl(daemon, "status", "--json")
    assert json.loads(as_json.stdout)["pid"] == daemon.process.pid
    # Before the subcommand too, as scripts write it; the subcommand's own --json
    # default once overwrote it, and `jarvisctl --json status` printed the table.
    before = ctl(daemon, "--json", "status")
    assert json.loads(before.stdout)["pid"] == daemon.process.pid


def test_socket_from_environment(start_daemon: Start) -> None:
    daemon = start_daemon()
    result = ctl(None, "status", "--json", env={"JARVIS_SOCKET": str(daemon.socket)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "running"


def test_socket_from_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JARVIS_SOCKET", raising=False)
    config = tmp_path / "jarvis.yaml"
    config.write_text("control: {socket: ~/custom/j.sock}\n", encoding="utf-8")
    assert resolve_socket(None, config) == Path.home() / "custom" / "j.sock"
    assert resolve_socket(Path("/x.sock"), config) == Path("/x.sock")
    monkeypatch.setenv("JARVIS_SOCKET", "/env.sock")
    assert resolve_socket(None, config) == Path("/env.sock")


def test_default_socket_without_xdg_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trimmed environment (as MCP clients give `jarvisctl mcp`) finds logind's runtime dir."""
    from jarvisd.paths import default_socket_path

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_socket_path() == tmp_path / "jarvis" / "jarvisd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    logind = Path(f"/run/user/{os.getuid()}")
    if sys.platform.startswith("linux") and logind.is_dir() and logind.stat().st_uid == os.getuid():
        assert default_socket_path() == logind / "jarvis" / "jarvisd.sock"
    elif sys.platform.startswith("linux"):
        assert default_socket_path() == Path(f"/tmp/jarvis-{os.getuid()}") / "jarvisd.sock"


def test_reload_config_and_jobs(start_daemon: Start) -> None:
    daemon = start_daemon()
    daemon.rewrite(search={"default_limit": 4}, control={"socket": "/tmp/elsewhere.sock"})
    reload = ctl(daemon, "reload", "--json")
    assert reload.returncode == 0, reload.stderr
    outcome = json.loads(reload.stdout)
    assert outcome["changed"] == ["search.default_limit"]
    assert outcome["restart_required"] == ["control.socket"]
    readable = ctl(daemon, "reload")
    assert "no changes" in readable.stdout or "restart" in readable.stdout

    shown = ctl(daemon, "config", "show")
    assert "default_limit: 4" in shown.stdout
    assert json.loads(ctl(daemon, "config", "show", "--json").stdout)["config"]

    jobs = json.loads(ctl(daemon, "jobs", "--json").stdout)["jobs"]
    assert [job["id"] for job in jobs] == ["memory_sample", "index", "maintenance"]
    run = ctl(daemon, "jobs", "run", "memory_sample")
    assert run.returncode == 0 and "started" in run.stdout


def test_reload_of_a_broken_file_exits_1_with_the_reason(start_daemon: Start) -> None:
    daemon = start_daemon()
    daemon.config_path.write_text("storage:\n  threads: none\n", encoding="utf-8")
    result = ctl(daemon, "reload")
    assert result.returncode == 1
    assert "storage.threads (line 2)" in result.stderr
    as_json = ctl(daemon, "reload", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "invalid_config"


def test_exit_codes(start_daemon: Start, tmp_path: Path) -> None:
    daemon = start_daemon()
    assert ctl(daemon, "jobs", "run", "nope").returncode == 1
    assert ctl(daemon, "no-such-command").returncode == 2
    missing = ctl(tmp_path / "absent.sock", "status")
    assert missing.returncode == 3
    assert "is jarvisd running?" in missing.stderr and "absent.sock" in missing.stderr


def test_config_check_needs_no_daemon(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("search: {max_limit: 50}\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {max_limit: 0}\n", encoding="utf-8")
    assert ctl(None, "config", "check", str(good)).returncode == 0
    failed = ctl(None, "config", "check", str(bad), "--json")
    assert failed.returncode == 78
    assert "search.max_limit" in json.loads(failed.stdout)["problems"][0]


def test_config_check_exits_78_with_the_same_reason_as_jarvisd(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {max_limit: 0}\n", encoding="utf-8")
    by_ctl = ctl(None, "config", "check", str(bad))
    by_daemon = subprocess.run(
        [sys.executable, "-m", "jarvisd", "--check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert by_ctl.returncode == by_daemon.returncode == 78
    assert by_ctl.stdout == ""
    for result in (by_ctl, by_daemon):
        assert "search.max_limit (line 1)" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--json", "no-such-command"),
        ("search", "--json"),  # QUERY missing
        ("graph", "--json"),  # the handler's own usage check
        ("top", "--interval", "0", "--json"),
        ("--json", "status", "--bogus"),
    ],
)
def test_usage_errors_with_json_are_a_json_error_on_stderr(args: tuple[str, ...]) -> None:
    result = ctl(None, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "usage"
    assert error["message"] and error["usage"].startswith("usage: jarvisctl")


def test_usage_errors_without_json_read_as_argparse_prints_them() -> None:
    result = ctl(None, "search")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: jarvisctl search")
    assert "jarvisctl search: error: the following arguments are required" in result.stderr


def test_jarvisctl_imports_nothing_heavy(start_daemon: Start) -> None:
    daemon = start_daemon()
    probe = (
        "import sys; from jarvisd.cli import main; code = main(['--socket', sys.argv[1], "
        "'status', '--json']); heavy = sorted(m for m in ('torch', 'duckdb', "
        "'sentence_transformers', 'pandas', 'numpy', 'pydantic', 'aiohttp', 'mcp', 'anyio') "
        "if m in sys.modules); print('HEAVY', heavy, file=sys.stderr); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(daemon.socket)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr

"""The service files, read as their managers read them.

Nothing here boots systemd or launchd. The units go through `systemd-analyze
verify` and `systemd-analyze security --offline=true` where the tool exists
(Debian's `systemd` package) and skip, saying so, where it does not. The
launchd agent is parsed with plistlib and its program (a shell script) is run
with the real jarvisd.
"""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import seccomp
from conftest import base_config, free_port, write_config

from jarvisd.cli.client import ControlClient, DaemonUnreachable
from jarvisd.paths import default_data_dir, default_socket_path

PACKAGING = Path(__file__).resolve().parents[1] / "packaging"
USER_UNIT = PACKAGING / "systemd" / "jarvisd.service"
SYSTEM_UNIT = PACKAGING / "systemd" / "jarvisd@.service"
PLIST = PACKAGING / "launchd" / "io.jarvisd.agent.plist"
JARVISD = Path(sys.executable).with_name("jarvisd")
SECCOMP = Path(__file__).with_name("seccomp.py")
EXAMPLE_VAULT = PACKAGING.parent / "jarvisd" / "example_vault"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
requires_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd)",
)
# issue 16: the units scored 7.3 and 7.0 before they were hardened.
MAX_EXPOSURE = 4.0


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def values(path: Path, key: str) -> list[str]:
    """Every value of a key in [Service], repeated keys included (configparser keeps one)."""
    pattern = re.compile(rf"^{re.escape(key)}=(.*)$", re.MULTILINE)
    return pattern.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [USER_UNIT, SYSTEM_UNIT], ids=lambda path: path.name)
def test_systemd_unit(path: Path) -> None:
    service = unit(path)["Service"]
    assert service["Type"] == "notify"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert {"78", "73"} <= set(service["RestartPreventExitStatus"].split())
    assert int(service["WatchdogSec"].rstrip("s")) > 0
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["RuntimeDirectoryMode"] == "0700"
    assert int(service["Nice"]) > 0
    assert service["IOSchedulingClass"] == "idle"
    assert "jarvisd" in service["ExecStart"] and "--config" in service["ExecStart"]
    assert "WantedBy" in unit(path)["Install"]
    # What jarvisd needs stays allowed: the Unix socket, loopback TCP; no W^X rule
    # (torch generates kernels), no private network (the metrics port).
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert (service["IPAddressDeny"], service["IPAddressAllow"]) == ("any", "localhost")
    assert "MemoryDenyWriteExecute" not in service and "PrivateNetwork" not in service
    assert values(path, "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
        "mbind sched_setaffinity",
    ]
    assert service["CapabilityBoundingSet"] == ""


def test_the_user_unit_starts_on_a_fresh_account_and_after_a_reboot() -> None:
    """No ReadWritePaths that may not exist: that fails the start with 226/NAMESPACE."""
    service = unit(USER_UNIT)["Service"]
    # The socket folder is made by systemd at each start (it is gone after a reboot).
    assert service["RuntimeDirectory"] == "jarvis"
    writable = service["ReadWritePaths"].split()
    assert writable == ["-%h/.local/share/jarvis"] and "%t" not in service["ReadWritePaths"]
    # ...and the state folder before the sandbox is set up, outside it ("+").
    assert service["ExecStartPre"] == "+/bin/mkdir -p -m 0700 %h/.local/share/jarvis"


def test_the_socket_and_database_defaults_agree_with_the_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runtime = tmp_path / "run-user-1000"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    where_jarvisctl_looks = default_socket_path()
    assert default_data_dir() == tmp_path / "share" / "jarvis"  # the user unit's ReadWritePaths
    # User unit: RuntimeDirectory=jarvis is $XDG_RUNTIME_DIR/jarvis, where jarvisctl looks.
    monkeypatch.setenv(
        "RUNTIME_DIRECTORY", str(runtime / unit(USER_UNIT)["Service"]["RuntimeDirectory"])
    )
    assert default_socket_path() == where_jarvisctl_looks == runtime / "jarvis" / "jarvisd.sock"
    # System unit for alice: /run/jarvis-alice and /var/lib/jarvis-alice, as its comment says.
    service = unit(SYSTEM_UNIT)["Service"]
    monkeypatch.setenv(
        "RUNTIME_DIRECTORY", "/run/" + service["RuntimeDirectory"].replace("%i", "alice")
    )
    monkeypatch.setenv(
        "STATE_DIRECTORY", "/var/lib/" + service["StateDirectory"].replace("%i", "alice")
    )
    comment = SYSTEM_UNIT.read_text(encoding="utf-8")
    assert str(default_socket_path()) == "/run/jarvis-alice/jarvisd.sock"
    assert f"Socket:   {default_socket_path()}" in comment
    assert str(default_data_dir() / "jarvis.duckdb") == "/var/lib/jarvis-alice/jarvis.duckdb"
    assert f"Database: {default_data_dir() / 'jarvis.duckdb'}" in comment
    assert "ReadWritePaths" not in service  # StateDirectory and RuntimeDirectory suffice


# ------------------------------------------------------------------ systemd-analyze


def installed(path: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The unit as installed here: its ExecStart binary is this venv's jarvisd.

    verify checks that ExecStart exists; the user unit runs %h/.local/bin/jarvisd,
    so HOME is a folder holding that link, and the system unit's /usr/local/bin
    path is replaced by the venv's (the only line changed).
    """
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "jarvisd").symlink_to(JARVISD)
    name = path.name.replace("@.", "@alice.")
    text = path.read_text(encoding="utf-8").replace("/usr/local/bin/jarvisd", str(JARVISD))
    copy = tmp_path / name
    copy.write_text(text, encoding="utf-8")
    return copy, {**os.environ, "HOME": str(home), "SYSTEMD_LOG_LEVEL": "notice"}


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@requires_systemd_analyze
@pytest.mark.parametrize("path", [USER_UNIT, SYSTEM_UNIT], ids=lambda path: path.name)
def test_systemd_analyze_verify_finds_nothing(path: Path, tmp_path: Path) -> None:
    copy, env = installed(path, tmp_path)
    result = analyze("verify", "--man=no", str(copy), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # not even a warning


@requires_systemd_analyze
@pytest.mark.parametrize("path", [USER_UNIT, SYSTEM_UNIT], ids=lambda path: path.name)
def test_systemd_analyze_security_exposure_is_at_most_4(path: Path, tmp_path: Path) -> None:
    copy, env = installed(path, tmp_path)
    result = analyze("security", "--offline=true", "--no-pager", str(copy), env=env)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


# ----------------------------------------------------------------------------- launchd


def test_launchd_plist() -> None:
    plist = plistlib.loads(PLIST.read_bytes())
    assert plist["Label"] == PLIST.stem
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert isinstance(plist["ThrottleInterval"], int) and plist["ThrottleInterval"] > 0
    shell, flag, script, program, config = plist["ProgramArguments"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert program.endswith("/.local/bin/jarvisd") and config.endswith("/jarvis.yaml")
    assert 'exec "$0" --config "$1"' in script
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True
    assert plist["Nice"] > 0
    assert plist["Umask"] == 0o077
    assert plist["StandardOutPath"].endswith(".log")
    assert plist["StandardErrorPath"] == plist["StandardOutPath"]


def agent_program(config: Path) -> list[str]:
    """The agent's ProgramArguments with this venv's jarvisd and `config`."""
    shell, flag, script, _, _ = plistlib.loads(PLIST.read_bytes())["ProgramArguments"]
    return [shell, flag, script, str(JARVISD), str(config)]


def test_a_bad_config_stops_the_agent_and_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "jarvis.yaml"
    bad.write_text("search: {max_limit: 0}\n", encoding="utf-8")
    result = subprocess.run(
        agent_program(bad), capture_output=True, text=True, timeout=60, check=False
    )
    # Exit 0 is the one exit KeepAlive/SuccessfulExit=false does not restart.
    assert result.returncode == 0
    assert "search.max_limit (line 1)" in result.stderr  # the reason, in the agent's log
    assert f"jarvisd: not started: {bad} is invalid" in result.stderr
    assert "launchctl kickstart -k gui/" in result.stderr


@pytest.mark.serial
def test_a_good_config_runs_jarvisd_in_place_of_the_shell(short_tmp: Path) -> None:
    config: dict[str, Any] = base_config(short_tmp)
    path = write_config(short_tmp / "jarvis.yaml", config)
    with (short_tmp / "agent.log").open("wb") as log:
        agent = subprocess.Popen(agent_program(path), stdout=log, stderr=subprocess.STDOUT)
    try:
        status = wait_for_status(ControlClient(Path(config["control"]["socket"])), agent)
        # exec'd: launchd's pid is jarvisd's, so `launchctl kill SIGHUP` reaches it.
        assert status["pid"] == agent.pid
        # A crash (here SIGKILL, as an out-of-memory kill) is no successful exit:
        # launchd restarts it. (SIGSEGV would do the same, and leave a core file.)
        agent.send_signal(signal.SIGKILL)
        assert agent.wait(30) == -signal.SIGKILL
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def wait_for_status(client: ControlClient, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}"
        try:
            status: dict[str, Any] = client.get("/v1/status")
            return status
        except DaemonUnreachable:
            time.sleep(0.05)
    raise AssertionError("jarvisd did not answer within 60 s")


# ------------------------------------------------------------------ the syscall filter


@pytest.mark.serial
@pytest.mark.slow
@pytest.mark.skipif(seccomp.available() is not None, reason=str(seccomp.available()))
def test_jarvisd_does_its_work_under_the_units_syscall_filter(short_tmp: Path) -> None:
    """Model, DuckDB, inotify, sockets, reload and stop, with the units' SystemCallFilter.

    One unit is enough: test_systemd_unit holds both to the same filter lines.
    """
    path = USER_UNIT
    vault = short_tmp / "vault"
    shutil.copytree(EXAMPLE_VAULT, vault)
    config = base_config(
        short_tmp,
        vaults=[{"name": "v", "path": str(vault)}],
        indexing={"on_start": False, "watch": True, "debounce": "200ms"},
        metrics={"listen": f"127.0.0.1:{free_port()}"},
    )
    config_path = write_config(short_tmp / "jarvis.yaml", config)
    command = [sys.executable, str(SECCOMP), str(path), "--", str(JARVISD), "--config"]
    with (short_tmp / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen([*command, str(config_path)], stdout=log, stderr=log)
    client = ControlClient(Path(config["control"]["socket"]), timeout=300)
    try:
        wait_for_status(client, daemon)
        events = list(client.stream("POST", "/v1/index", query={"wait": 1}))
        assert events[-1]["run"]["state"] == "done", events[-1]
        assert client.get("/v1/search", q="espresso", mode="hybrid")["results"]
        (vault / "Watched.md").write_text("# Watched\nA zucchini glut.\n", encoding="utf-8")
        wait_until(lambda: client.get("/v1/search", q="zucchini", mode="keyword")["total"] == 1)
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: "config.reloaded" in (short_tmp / "daemon.log").read_text())
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = (short_tmp / "daemon.log").read_text(encoding="utf-8")
    assert '"level": "error"' not in text and "Operation not permitted" not in text, text


def wait_until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)

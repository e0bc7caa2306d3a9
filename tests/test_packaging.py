"""The service definitions: launchd plist and systemd units carry the keys we rely on."""

from __future__ import annotations

import configparser
import plistlib
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[1] / "packaging"


def unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("name", ["jarvisd.service", "jarvisd@.service"])
def test_systemd_unit(name: str) -> None:
    service = unit(PACKAGING / "systemd" / name)["Service"]
    assert service["Type"] == "notify"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert "78" in service["RestartPreventExitStatus"].split()
    assert int(service["WatchdogSec"].rstrip("s")) > 0
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"]  # the state dir stays writable
    assert int(service["Nice"]) > 0
    assert service["IOSchedulingClass"] == "idle"
    assert "jarvisd" in service["ExecStart"] and "--config" in service["ExecStart"]
    assert "WantedBy" in unit(PACKAGING / "systemd" / name)["Install"]


def test_launchd_plist() -> None:
    (path,) = (PACKAGING / "launchd").glob("*.plist")
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == path.stem
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ProgramArguments"][0].endswith("/jarvisd")
    assert "--config" in plist["ProgramArguments"]
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True
    assert plist["Nice"] > 0
    assert plist["StandardOutPath"].endswith(".log")
    assert plist["StandardErrorPath"].endswith(".log")

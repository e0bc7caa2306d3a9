"""Default locations, kept free of heavy imports: jarvisctl resolves them on every command."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _systemd_directory(variable: str) -> Path | None:
    """The folder systemd made for this service (`StateDirectory=` and the like), if any.

    systemd sets $STATE_DIRECTORY, $RUNTIME_DIRECTORY for a unit naming them (a
    colon-separated list when it names several: the first is ours).
    """
    value = os.environ.get(variable, "").split(":")[0]
    return Path(value) if value and os.path.isabs(value) else None


def default_data_dir() -> Path:
    """Where the database lives by default: the unit's StateDirectory, else the user data dir."""
    state = _systemd_directory("STATE_DIRECTORY")
    if state is not None:
        return state
    import platformdirs

    return Path(platformdirs.user_data_dir("jarvis", appauthor=False))


def default_socket_path() -> Path:
    """`$XDG_RUNTIME_DIR/jarvis/jarvisd.sock`; a private folder elsewhere without one.

    Under a systemd unit with `RuntimeDirectory=`, in that folder: the user unit's
    `RuntimeDirectory=jarvis` is `$XDG_RUNTIME_DIR/jarvis`, the same place.
    """
    service = _systemd_directory("RUNTIME_DIRECTORY")
    if service is not None:
        return service / "jarvisd.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "jarvis" / "jarvisd.sock"
    # MCP clients start `jarvisctl mcp` with a trimmed environment (the SDK's stdio
    # client passes only HOME, LOGNAME, PATH, SHELL, TERM, USER): find the runtime
    # dir logind made for this user, where a systemd user service's jarvisd listens.
    logind = Path(f"/run/user/{os.getuid()}")
    if sys.platform.startswith("linux") and logind.is_dir() and logind.stat().st_uid == os.getuid():
        return logind / "jarvis" / "jarvisd.sock"
    if sys.platform == "darwin":
        # launchd gives no runtime dir; the per-user cache folder is private to the user.
        return Path.home() / "Library" / "Caches" / "jarvis" / "jarvisd.sock"
    return Path(f"/tmp/jarvis-{os.getuid()}") / "jarvisd.sock"


def default_config_path() -> Path | None:
    """$JARVIS_CONFIG, else ~/.config/jarvis/jarvis.yaml when it exists, else none."""
    env = os.environ.get("JARVIS_CONFIG")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidate = Path(xdg) / "jarvis" / "jarvis.yaml"
    return candidate if candidate.exists() else None

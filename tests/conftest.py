"""Shared fixtures: config files in temp dirs and the real jarvisd as a subprocess.

The harnesses themselves live in `jarvisd.testing`; they are imported here under
the names the tests have always imported from conftest.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from jarvisd.testing import DaemonProcess as DaemonProcess
from jarvisd.testing import base_config as base_config
from jarvisd.testing import ctl as ctl
from jarvisd.testing import free_port as free_port
from jarvisd.testing import merged as merged
from jarvisd.testing import write_config as write_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `heavy` first (longest processing time first): with two workers, a
    90 s test that starts last keeps one core idle for most of it at the end."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: Unix socket paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="jv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_daemon(short_tmp: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(
        config: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        env: dict[str, str] | None = None,
        user: int | None = None,
        prefix: Sequence[str] = (),
        **overrides: Any,
    ) -> DaemonProcess:
        """Start jarvisd on `config`, or on base_config(tmp, **overrides); `prefix` runs it
        under a wrapper command (`unshare ... sh -c '...; exec "$@"' sh`)."""
        chosen = config or base_config(short_tmp, **overrides)
        daemon = DaemonProcess(short_tmp, chosen, env=env, user=user, prefix=prefix)
        started.append(daemon)
        if wait:
            daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()

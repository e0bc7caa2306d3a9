"""Harnesses for testing jarvisd and code around it, shipped with the package.

As `structlog.testing` does for structlog: the tests of this repository use
them, and so can anyone who embeds jarvisd. Everything here runs the real
parts (a real vault folder, a real DuckDB file, the real model, the real
daemon as a subprocess, the real `jarvisctl`); nothing is faked.

- `IndexedVault`: a vault indexed into a store, with the pools, metrics and
  model beside it, from which a test builds the services it checks.
- `DaemonProcess`: the real `jarvisd` as a subprocess on a config file.
- `ctl()`: `jarvisctl --socket ... ARGS` as a subprocess.

No pytest here (a failed set-up raises AssertionError), and the heavy parts
(DuckDB, numpy, the model) are imported only by what needs them, so
`from jarvisd.testing import ctl` costs what the CLI costs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from jarvisd.cli.client import ControlClient, DaemonUnreachable

if TYPE_CHECKING:
    from jarvisd.config import Config
    from jarvisd.indexing.indexer import Indexer, RunReport
    from jarvisd.model.embedder import Embedder
    from jarvisd.observe.metrics import Metrics
    from jarvisd.pools import Pools
    from jarvisd.search import SearchService
    from jarvisd.store import Store

EXAMPLE_VAULT = Path(__file__).resolve().parent / "example_vault"

__all__ = [
    "EXAMPLE_VAULT",
    "DaemonProcess",
    "IndexedVault",
    "base_config",
    "copy_example_vault",
    "ctl",
    "free_port",
    "merged",
    "vault_config",
    "write_config",
    "write_vault",
]


# ------------------------------------------------------------------------ vaults


def copy_example_vault(destination: Path) -> Path:
    """A copy of the bundled example vault (15 notes in 6 folders) at `destination`."""
    shutil.copytree(EXAMPLE_VAULT, destination)
    return destination


def write_vault(root: Path, notes: Mapping[str, str]) -> Path:
    """A vault folder holding `notes` (vault-relative path -> text)."""
    for path, text in notes.items():
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8")
    return root


def vault_config(vault: Path, database: Path, *, name: str = "notes", **sections: Any) -> Config:
    """A config over one vault folder and one database file, lean for tests.

    One DuckDB thread, the model on the CPU and loaded only when a run needs
    it; each of `sections` replaces that section whole (`search=SearchConfig(...)`,
    `storage=StorageConfig(...)`: name its `database` then).
    """
    from jarvisd.config import Config, EmbeddingConfig, StorageConfig, VaultConfig

    chosen: dict[str, Any] = {
        "vaults": [VaultConfig(name=name, path=vault)],
        "storage": StorageConfig(database=database, threads=1),
        "embedding": EmbeddingConfig(preload=False, device="cpu"),
    }
    chosen.update(sections)
    return Config(**chosen)


@dataclass
class IndexedVault:
    """A store over the vaults of `config`, and what the services on it need.

    `open()` opens it (a store of your own, too: one written without the
    model); `indexed()` opens and indexes it with the real indexer and model.
    `close()` when done (or use it as a context manager).
    """

    config: Config
    store: Store
    embedder: Embedder
    pools: Pools
    metrics: Metrics

    @classmethod
    def open(cls, config: Config, store: Store | None = None) -> IndexedVault:
        from jarvisd.model.embedder import Embedder
        from jarvisd.observe.metrics import Metrics
        from jarvisd.pools import Pools
        from jarvisd.store import Store

        embedder = Embedder(config.embedding)
        if store is None:
            store = Store(config.database_path, config.storage, embedder.probe_dimension())
        return cls(config, store, embedder, Pools(config.threads), Metrics())

    @classmethod
    def indexed(cls, config: Config) -> IndexedVault:
        """Open and run one index run (blocking: call it outside an event loop)."""
        opened = cls.open(config)
        try:
            asyncio.run(opened.index())
        except BaseException:
            opened.close()
            raise
        return opened

    @property
    def vault(self) -> Path:
        """The first vault's folder."""
        return self.config.vaults[0].root

    def indexer(self) -> Indexer:
        """A new indexer on the store (each has its own run ids and listeners)."""
        from jarvisd.indexing.indexer import Indexer

        return Indexer(self.config, self.store, self.embedder, self.pools, self.metrics)

    def service(self, config: Config | None = None) -> SearchService:
        """A SearchService on the store, as Knowledge.start() builds it (not started)."""
        from jarvisd.search import SearchService

        chosen = config or self.config
        return SearchService(chosen, self.store, self.embedder, self.pools, self.metrics)

    async def index(
        self, service: SearchService | None = None, *, indexer: Indexer | None = None
    ) -> RunReport:
        """One index run that must succeed; `service` follows it as Knowledge wires it."""
        runner = indexer or self.indexer()
        if service is not None:
            runner.on_change(service.invalidate)
        report = await runner.run()
        if report.state != "done":
            raise AssertionError(f"the index run ended {report.state}: {report.error}")
        return report

    def edit(self, path: str, old: str, new: str) -> None:
        """Replace `old` by `new` in a note of the first vault."""
        file = self.vault / path
        file.write_text(file.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")

    def close(self) -> None:
        self.store.close()
        self.pools.shutdown()

    def __enter__(self) -> IndexedVault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ------------------------------------------------------------------------ daemon


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def merged(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`config` with each override section merged in (one level deep)."""
    out = dict(config)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **values}
        else:
            out[section] = values
    return out


def base_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """A config that keeps everything inside `root` and the daemon quick to start."""
    config: dict[str, Any] = {
        "storage": {"database": str(root / "data" / "jarvis.duckdb")},
        "control": {"socket": str(root / "run" / "jarvisd.sock")},
        "metrics": {"listen": None},
        "logging": {"level": "info", "format": "json"},
        "gc": {"freeze_after_startup": False},
        # Lean by default: tests of indexing and search opt in to the model and the runs.
        "embedding": {"preload": False},
        "indexing": {"on_start": False, "watch": False},
        "schedule": {"index": None, "maintenance": None, "memory_sample": "10s"},
    }
    return merged(config, overrides)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class DaemonProcess:
    """The real jarvisd, started as a subprocess on a config file."""

    def __init__(
        self,
        root: Path,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        user: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.config = config
        self.config_path = write_config(root / "jarvis.yaml", config)
        self.socket = Path(config["control"]["socket"])
        self.log_path = root / "daemon.log"
        self._log = self.log_path.open("wb")
        environment = dict(os.environ)
        for inherited in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JARVIS_SOCKET"):
            environment.pop(inherited, None)
        environment.update(env or {})
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "jarvisd", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=root,
            user=user,
        )
        self.client = ControlClient(self.socket, timeout=30)

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"jarvisd exited {self.process.returncode}:\n{self.output()}")
            try:
                status: dict[str, Any] = self.client.get("/v1/status")
                return status
            except DaemonUnreachable:
                time.sleep(0.05)
        raise AssertionError(f"jarvisd not ready in {timeout}s:\n{self.output()}")

    def rewrite(self, **overrides: Any) -> None:
        """Write the config file again, with these sections merged into the current one."""
        self.config = merged(self.config, overrides)
        write_config(self.config_path, self.config)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines, optionally only those with event == name."""
        out = []
        for line in self.output().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                out.append(record)
        return out

    def wait_event(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {name!r} in {timeout}s:\n{self.output()}")


class HasSocket(Protocol):
    @property
    def socket(self) -> Path: ...


def ctl(
    daemon: HasSocket | Path | None,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`jarvisctl --socket <daemon's> ARGS` as a real subprocess, wide enough for tables.

    `daemon`: a DaemonProcess or a socket path; None passes no `--socket` (the
    CLI then finds one itself: `JARVIS_SOCKET` in `env`, or the default). `env`
    is added to this process's environment, less its `JARVIS_SOCKET`.
    """
    command = [sys.executable, "-m", "jarvisd.cli"]
    if daemon is not None:
        path = daemon if isinstance(daemon, Path) else daemon.socket
        command += ["--socket", str(path)]
    environment = {k: v for k, v in os.environ.items() if k != "JARVIS_SOCKET"}
    environment["COLUMNS"] = "200"
    environment.update(env or {})
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )

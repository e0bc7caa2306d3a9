"""boltkit's stub Bolt server as a test helper: play a script, check it was played out.

The scripts live in tests/bolt/; `{{NAME}}` in a script is replaced by the
JSON form of a value the test passes (the backend's own query constants), so
a script never drifts from the Cypher it checks. The stub runs in the
separate boltkit venv that `make test` builds; without it these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "bolt"
MISSING = (
    "boltkit's boltstub is not installed: run `make boltkit` (it builds .venv-boltkit), "
    "or point JARVIS_BOLTSTUB at a boltstub executable"
)


def boltstub() -> Path | None:
    """The boltstub executable: $JARVIS_BOLTSTUB, .venv-boltkit, or on PATH."""
    for candidate in (
        os.environ.get("JARVIS_BOLTSTUB"),
        str(REPO / ".venv-boltkit" / "bin" / "boltstub"),
        shutil.which("boltstub"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


requires_boltstub = pytest.mark.skipif(boltstub() is None, reason=MISSING)


def render(name: str, values: dict[str, Any], into: Path) -> Path:
    text = (SCRIPTS / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", json.dumps(value))
    assert "{{" not in text, f"{name}: a placeholder has no value"
    target = into / name
    target.write_text(text, encoding="utf-8")
    return target


class BoltStub:
    """One stub server on a free port of 127.0.0.1, playing one rendered script."""

    def __init__(self, name: str, values: dict[str, Any], tmp: Path) -> None:
        executable = boltstub()
        if executable is None:
            pytest.skip(MISSING)
        script = render(name, values, tmp)
        self.log_path = tmp / f"{name}.log"
        self._log = self.log_path.open("wb")
        # The venv's Python runs our join-instead-of-spin wrapper around boltkit's server.
        python = executable.parent / "python"
        self.process = subprocess.Popen(
            [str(python), str(SCRIPTS / "stub.py"), str(script)],
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.startswith("ready "), f"boltstub did not start: {line!r}\n{self.log()}"
        self.port = int(line.split()[1])
        self.uri = f"bolt://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the stub to end (the client's GOODBYE); its exit status."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -1
        finally:
            self._log.close()

    def __enter__(self) -> BoltStub:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

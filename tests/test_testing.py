"""jarvisd.testing, the harnesses shipped with the package: light to import, real when used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jarvisd.testing import EXAMPLE_VAULT, ctl, merged, write_vault


def test_importing_it_brings_in_neither_pytest_nor_the_heavy_parts() -> None:
    probe = (
        "import sys, json\n"
        "import jarvisd.testing\n"
        "print(json.dumps(sorted(m for m in ('pytest', 'duckdb', 'numpy', 'torch',\n"
        "    'sentence_transformers', 'aiohttp') if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []


def test_ctl_runs_the_real_jarvisctl_with_or_without_a_socket(tmp_path: Path) -> None:
    absent = ctl(tmp_path / "absent.sock", "status")
    assert absent.returncode != 0 and "absent.sock" in absent.stderr
    from_environment = ctl(None, "status", env={"JARVIS_SOCKET": str(tmp_path / "env.sock")})
    assert from_environment.returncode != 0 and "env.sock" in from_environment.stderr


def test_the_example_vault_is_found_and_overrides_merge_one_level_deep() -> None:
    assert (EXAMPLE_VAULT / "Home.md").is_file()
    assert merged({"a": {"x": 1}, "b": 2}, {"a": {"y": 3}, "b": 4}) == {
        "a": {"x": 1, "y": 3},
        "b": 4,
    }


def test_write_vault_makes_the_folders_of_nested_notes(tmp_path: Path) -> None:
    root = write_vault(tmp_path / "v", {"a.md": "# A\n", "deep/er/b.md": "# B\n[[a]]\n"})
    assert (root / "deep" / "er" / "b.md").read_text(encoding="utf-8") == "# B\n[[a]]\n"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.md")) == [
        "a.md",
        "deep/er/b.md",
    ]

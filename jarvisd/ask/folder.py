"""A local model folder both runtimes load: what must be in it, checked before any import.

Checking costs a few file reads, so a missing or broken folder is reported
with what is wrong in it (and what to do) instead of a stack trace from deep
inside transformers, seconds into a load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jarvisd.ask.errors import ModelFolderError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
IMPORT_HINT = "import one with `jarvisctl model import GGUF_OR_FOLDER DEST`"


@dataclass(frozen=True, slots=True)
class ModelFolder:
    path: Path
    model_type: str
    architectures: tuple[str, ...]
    weights: tuple[Path, ...]
    weight_bytes: int
    chat_template: bool

    @property
    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and mtimes: a failed load is retried once any of these change."""
        files = [self.path / "config.json", *self.weights]
        out = []
        for file in files:
            try:
                info = file.stat()
            except OSError:
                continue
            out.append((file.name, info.st_size, info.st_mtime_ns))
        return tuple(out)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model_type": self.model_type,
            "architectures": list(self.architectures),
            "weight_bytes": self.weight_bytes,
        }


def inspect_folder(path: Path) -> ModelFolder:
    """The folder's facts, or ModelFolderError saying what is missing or broken."""
    if not path.exists():
        raise ModelFolderError(f"llm.model {path} does not exist; {IMPORT_HINT}")
    if not path.is_dir():
        raise ModelFolderError(f"llm.model {path} is not a folder; {IMPORT_HINT}")
    config = _json(path / "config.json")
    if not isinstance(config.get("model_type"), str):
        raise ModelFolderError(f"{path / 'config.json'} names no model_type; {IMPORT_HINT}")
    weights = tuple(sorted(path.glob("*.safetensors")))
    if not weights:
        raise ModelFolderError(f"{path} holds no *.safetensors weights; {IMPORT_HINT}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFolderError(
            f"{path} holds no tokenizer ({', '.join(TOKENIZER_FILES)}); {IMPORT_HINT}"
        )
    architectures = config.get("architectures") or []
    return ModelFolder(
        path=path,
        model_type=str(config["model_type"]),
        architectures=tuple(str(name) for name in architectures),
        weights=weights,
        weight_bytes=sum(weight.stat().st_size for weight in weights),
        chat_template=has_chat_template(path),
    )


def has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    tokenizer_config = path / "tokenizer_config.json"
    if not tokenizer_config.is_file():
        return False
    return bool(_json(tokenizer_config).get("chat_template"))


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFolderError(f"{path} is missing; {IMPORT_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFolderError(f"{path} is not valid JSON ({error}); {IMPORT_HINT}") from None
    if not isinstance(value, dict):
        raise ModelFolderError(f"{path} is not a JSON object; {IMPORT_HINT}")
    return value

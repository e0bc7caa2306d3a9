"""Loading jarvis.yaml: safe YAML, full validation, errors with key paths and lines.

Loading never half-applies anything: `load_config` returns a complete, valid
`Config` or raises `ConfigError` naming every problem, its key path and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from jarvisd.config.model import Config

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(Exception):
    """A config file that cannot be used, with where and why."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        return f"{self.source}:\n" + "\n".join(f"  - {problem}" for problem in self.problems)


def _key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple[str | int, ...], int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    if root is not None:
        walk(root, ())
    return lines


def _format_location(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _problems(error: ValidationError, lines: Mapping[tuple[str | int, ...], int]) -> list[str]:
    problems = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not _is_internal_loc(part))
        # `for` is spelled for_ in the model; show the user's spelling.
        loc = tuple("for" if part == "for_" else part for part in loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = _unknown_key(loc)
        line = None
        probe = loc
        while probe and line is None:
            line = lines.get(probe)
            probe = probe[:-1]
        where = _format_location(loc)
        at = f" (line {line})" if line else ""
        problems.append(f"{where}{at}: {message}")
    return problems


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    return "unknown key (check the spelling against etc/jarvis.yaml)"


def _is_internal_loc(part: object) -> bool:
    # pydantic adds the tagged-union/function names to some locations
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def validation_problems(error: ValidationError, text: str) -> list[str]:
    """Each problem of a YAML document's validation, as `key.path (line N): message`."""
    return _problems(error, _key_lines(text))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text into a Config, or raise ConfigError with key paths and lines."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(source, [f"malformed YAML{where}: {problem}"]) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping of sections (vaults:, ...)"])
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, _problems(error, _key_lines(text))) from error


def load_config(path: Path | None) -> Config:
    """The config in `path`, or all defaults when `path` is None."""
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise ConfigError(str(path), ["file not found"]) from error
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read: {error.strerror}"]) from error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {error.start})"]) from error
    return parse_config(text, str(path))

"""Loading jarvis.yaml: safe YAML, full validation, errors with key paths and lines.

Loading never half-applies anything: `load_config` returns a complete, valid
`Config` or raises `ConfigError` naming every problem, its key path and line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from jarvisd.config.model import Config

EX_CONFIG = 78  # sysexits.h: configuration error
# The documented example with every key is 15 KiB; a config a thousand times that is
# a mistake (or an attack), never a config.
MAX_CONFIG_BYTES = 1024 * 1024
# YAML aliases may repeat a block, but the document they expand to stays small: the
# example is ~600 nodes. A 902-byte "billion laughs" (nine levels of nine aliases)
# expands to 387 million nodes: following it took past 30 s and 9 GB (issue #9).
MAX_EXPANDED_NODES = 20_000


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


def _compose(text: str, source: str) -> yaml.Node | None:
    """The YAML node graph, refused when its aliases expand it past MAX_EXPANDED_NODES.

    Composing is linear in the text (an alias is one shared node); counting the
    expansion with a memo per node is linear too, and nothing past this point
    (the key-line walk, the constructor, validation) sees a document that is big.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from error
    if root is None:
        return None
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def expanded(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(
                source, [f"line {node.start_mark.line + 1}: a YAML alias refers to itself"]
            )
        open_nodes.add(key)
        total = 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        for child in children:
            total += expanded(child)
            if total > MAX_EXPANDED_NODES:
                raise ConfigError(
                    source,
                    [
                        f"line {node.start_mark.line + 1}: YAML aliases expand the document "
                        f"past {MAX_EXPANDED_NODES} values; write the values out instead"
                    ],
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    expanded(root)
    return root


def check_yaml(text: str, source: str) -> None:
    """Raise ConfigError when the YAML is malformed or its aliases expand it too far."""
    _compose(text, source)


def _key_lines(text: str, root: yaml.Node | None = None) -> dict[tuple[str | int, ...], int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple[str | int, ...], int] = {}
    if root is None:
        root = _compose(text, "<config>")

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


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = getattr(error, "problem", None) or str(error)
    return f"malformed YAML{where}: {problem}"


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
    root = _compose(text, source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the top level must be a mapping of sections (vaults:, ...)"])
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, _problems(error, _key_lines(text, root))) from error
    problems = _path_problems(config, _key_lines(text, root))
    if problems:
        raise ConfigError(source, problems)
    return config


def _path_problems(config: Config, lines: Mapping[tuple[str | int, ...], int]) -> list[str]:
    """What the file system can tell now: a log file that could never be opened."""
    problems: list[str] = []
    log_file = config.logging.file
    if log_file is not None:
        line = lines.get(("logging", "file"))
        where = f"logging.file{f' (line {line})' if line else ''}"
        if log_file.is_dir():
            problems.append(f"{where}: {log_file} is a directory; name a file in it")
        elif log_file.exists() and not os.access(log_file, os.W_OK):
            problems.append(f"{where}: {log_file} is not writable by this user")
        else:
            # The sink creates missing folders: the nearest one that exists must let it.
            folder = log_file.parent
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            if not folder.is_dir():
                problems.append(f"{where}: {folder} is not a directory")
            elif not log_file.exists() and not os.access(folder, os.W_OK | os.X_OK):
                problems.append(f"{where}: cannot create {log_file}: {folder} is not writable")
    return problems


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file only, at most MAX_CONFIG_BYTES.

    Opened without blocking and checked before reading: a FIFO put in the
    config's place would otherwise block the reload until someone wrote into it.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as error:
        raise ConfigError(str(path), ["file not found"]) from error
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read: {error.strerror}"]) from error
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a file"
            if stat.S_ISDIR(info.st_mode):
                kind = "a directory"
            raise ConfigError(str(path), [f"{kind}: the config must be a regular file"])
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                str(path), [f"{info.st_size} bytes, past the {MAX_CONFIG_BYTES}-byte limit"]
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:  # the file may grow while it is read
            chunk = os.read(descriptor, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), [f"past the {MAX_CONFIG_BYTES}-byte limit"])
        return b"".join(chunks)
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read: {error.strerror}"]) from error
    finally:
        os.close(descriptor)


def load_config(path: Path | None) -> Config:
    """The config in `path`, or all defaults when `path` is None."""
    if path is None:
        return Config()
    raw = read_config_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), [f"not UTF-8 text (byte {error.start})"]) from error
    return parse_config(text, str(path))

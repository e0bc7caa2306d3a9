"""Comparing two configs: what changed, what needs a restart, and a masked view."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from jarvisd.config.model import Config

RESTART_REQUIRED: frozenset[str] = frozenset(
    {
        "storage.database",
        "control.socket",
        "metrics.listen",
        "graph.backend",
        # Vectors of another model live in another space: the store drops them on
        # start and the catch-up run re-embeds every note.
        "embedding.model",
        "embedding.quantize",
    }
)


def flatten(config: Config) -> dict[str, Any]:
    """Dotted key -> value for every leaf setting; lists are leaves."""
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else key)
        else:
            out[prefix] = value

    walk(config.model_dump(mode="json", by_alias=True), "")
    return out


@dataclass(frozen=True)
class ConfigDiff:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)

    def touches(self, *prefixes: str) -> bool:
        """Whether any applied change is at or below one of these dotted prefixes."""
        keys = self.added + self.changed + self.removed
        return any(key == p or key.startswith(p + ".") for key in keys for p in prefixes)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed or self.restart_required)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "restart_required": self.restart_required,
        }


def diff_configs(old: Config, new: Config) -> tuple[Config, ConfigDiff]:
    """What changed from old to new, and the config to apply.

    The config to apply is `new` with every restart-only key kept at its old
    value: those are reported, not applied.
    """
    before, after = flatten(old), flatten(new)
    restart = sorted(key for key in RESTART_REQUIRED if before.get(key) != after.get(key))
    applied = new
    if restart:
        updates: dict[str, Any] = {}
        for key in restart:
            section, leaf = key.split(".", 1)
            current = updates.get(section, getattr(applied, section))
            updates[section] = current.model_copy(update={leaf: _get(old, key)})
        applied = applied.model_copy(update=updates)
    before_keys, after_keys = set(before), set(after)
    changed = sorted(
        key for key in before_keys & after_keys if before[key] != after[key] and key not in restart
    )
    return applied, ConfigDiff(
        added=sorted(after_keys - before_keys),
        changed=changed,
        removed=sorted(before_keys - after_keys),
        restart_required=restart,
    )


def _get(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# --------------------------------------------------------------- masked view & docs

MASK = "********"


def masked(config: Config) -> dict[str, Any]:
    """The effective config as JSON-able data with secrets replaced by a mask."""
    data = config.model_dump(mode="json", by_alias=True)
    for path in _secret_paths(Config):
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        if node.get(path[-1]) is not None:
            node[path[-1]] = MASK
    return data


def _secret_paths(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("secret"):
            yield (*prefix, name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _secret_paths(annotation, (*prefix, name))

"""Human units in the config file: durations (`10s`, `5m`, `1h`) and sizes (`512MB`)."""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Seconds from `10s`, `5m`, `1.5h`, `250ms`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '10s', '5m' or '1h', not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            number, unit = match.groups()
            return float(number) * _DURATION_UNITS[(unit or "s").lower()]
    raise ValueError(f"expected a duration like '10s', '5m' or '1h', got {value!r}")


def parse_size(value: object) -> int:
    """Bytes from `512MB`, `2GB`, `64KiB`, or a bare number of bytes (MB = 10^6)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like '512MB' or '2GB', not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            number, unit = match.groups()
            return int(float(number) * _SIZE_UNITS[(unit or "b").lower()])
    raise ValueError(f"expected a size like '512MB' or '2GB', got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for docs and diffs."""
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and (seconds / factor).is_integer():
            return f"{int(seconds / factor)}{unit}"
    if (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """The shortest exact spelling of a size in decimal units, for docs and diffs."""
    for unit in ("TB", "GB", "MB", "KB"):
        factor = _SIZE_UNITS[unit.lower()]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def human_bytes(size: float) -> str:
    """A rounded size for people (`1.2 GB`), not for round-tripping."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"

"""The value types jarvis.yaml's sections are made of: durations, sizes, user paths, a section."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from jarvisd.units import format_duration, format_size, parse_duration, parse_size

Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
Size = Annotated[int, BeforeValidator(parse_size), PlainSerializer(format_size, return_type=str)]


def _expand_path(value: object) -> object:
    if isinstance(value, str):
        return Path(os.path.expandvars(os.path.expanduser(value)))
    return value


UserPath = Annotated[Path, BeforeValidator(_expand_path), PlainSerializer(str, return_type=str)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

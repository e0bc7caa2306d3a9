"""Errors as domain values: a code a client can switch on, a message a person can act on.

Services raise subclasses of `DomainError` and never choose an HTTP status:
`jarvisd.api.errors.STATUS_BY_CODE` maps codes to statuses at the API edge.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """What went wrong (`code`), what to do (`message`), and details for the reply."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

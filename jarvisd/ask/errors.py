"""What asking can refuse, as domain values (the API maps codes to statuses)."""

from __future__ import annotations

from jarvisd.errors import DomainError


class AskError(DomainError):
    """Base of every error a question can get back."""

    code = "ask_error"


class BadQuestion(AskError):
    """The request itself is wrong: no question, too long, a field of the wrong type."""

    code = "bad_request"


class AskBusy(AskError):
    """Every generation slot is taken and the queue (llm.queue) is full."""

    code = "busy"


class AskUnavailable(AskError):
    """Asking has not started yet, or is stopping."""

    code = "unavailable"


class GeneratorError(Exception):
    """The LLM could not be loaded or could not generate; the message says why.

    Never reaches a client as an error: the answer becomes extractive and this
    message becomes its `reason`.
    """


class ModelFolderError(GeneratorError):
    """llm.model (or an import's source) is not a folder a runtime can load."""

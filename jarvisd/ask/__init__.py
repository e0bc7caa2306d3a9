"""Ask: templates first, then a local LLM (transformers | mlx), else extractive; citations checked.

`service.AskService` is the entry point. Beside it, one concern each:
`templates` and `actions` (intents answered from the index), `prompt`
(passages packed into the token budget), `generator` (the Protocol and the
factory keyed by `llm.runtime`; `transformers_backend`, `mlx_backend`
imported lazily), `llm` (loading, unloading, slots, streaming), `sentences`
and `citations` (the check), `extractive`, `importer` (GGUF or folder to a
folder both runtimes load).
"""

from jarvisd.ask.errors import AskBusy, AskError, AskUnavailable, BadQuestion, GeneratorError
from jarvisd.ask.replies import AskReply, Citation, SentenceCheck, Timings, Token
from jarvisd.ask.request import AskRequest, parse_ask
from jarvisd.ask.service import AskService
from jarvisd.ask.sources import AskSources, KnowledgeSources

__all__ = [
    "AskBusy",
    "AskError",
    "AskReply",
    "AskRequest",
    "AskService",
    "AskSources",
    "AskUnavailable",
    "BadQuestion",
    "Citation",
    "GeneratorError",
    "KnowledgeSources",
    "SentenceCheck",
    "Timings",
    "Token",
    "parse_ask",
]

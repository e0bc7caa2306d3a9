"""`AskService`: a question in, a short answer from the notes out, with checked citations.

Three paths, tried in this order:

1. template: the question matches an intent (`templates`), whose action
   answers from the index; no LLM, a few milliseconds.
2. llm: the best passages (hybrid search) packed into a prompt for the
   local model; its answer is streamed, then checked sentence by sentence
   against the passages (`citations`).
3. extractive: when no LLM is configured, none may run in this memory mode,
   the model folder is missing or broken, or generation fails or times out:
   the best sentences of the best passages, cited, and `reason` says why no
   model answered. Never an exception to the user, never a hang.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from jarvisd.ask.actions import run_action
from jarvisd.ask.citations import CheckedAnswer, check_answer
from jarvisd.ask.errors import AskBusy, AskUnavailable, GeneratorError
from jarvisd.ask.extractive import NOTHING, extractive_answer
from jarvisd.ask.generator import GenerationStats, Generator
from jarvisd.ask.llm import LlmRuntime
from jarvisd.ask.prompt import build_prompt
from jarvisd.ask.replies import AnswerPath, AskReply, Timings, Token
from jarvisd.ask.request import AskRequest, parse_ask
from jarvisd.ask.sentences import BatchEncoder, SentenceTable, SentenceVectors, sentence_table
from jarvisd.ask.sources import AskSources
from jarvisd.ask.templates import (
    Match,
    Names,
    TemplateFileError,
    TemplateMatcher,
    TemplateSet,
    load_templates,
)
from jarvisd.config import Config, ConfigDiff
from jarvisd.lifecycle import Background
from jarvisd.logs import get_logger
from jarvisd.model.embedder import Embedder, EmbedderError
from jarvisd.observe.memory import MemoryMode
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools
from jarvisd.search.passages import Passage

log = get_logger("jarvisd.ask")

TEMPLATE_CACHE = "templates"
NO_PASSAGE = "no passage in your notes matches the question"


class AskService:
    name = "ask"

    def __init__(
        self,
        config: Config,
        sources: AskSources,
        embedder: Embedder,
        pools: Pools,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._sources = sources
        self._embedder = embedder
        self._pools = pools
        self._metrics = metrics
        self.llm = LlmRuntime(config.llm, pools, metrics)
        self._templates: TemplateSet | None = None
        self.template_error: str | None = None
        self._matcher: TemplateMatcher | None = None
        self._names: Names | None = None
        self._cache: LRUCache[str, Match] = LRUCache(maxsize=max(1, config.templates.cache_size))
        self._hits = 0
        self._misses = 0
        self._answered: dict[str, int] = {}
        self._mode = MemoryMode.FULL
        self._started = False
        self._background = Background()  # template reloads, LLM unloads after a reload
        self._sentences = SentenceVectors(embedder.encode)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._load_templates()
        self._started = True

    def stopping(self) -> None:
        """The daemon is stopping: answers being generated end at their next token."""
        self.llm.stop_generating()

    async def stop(self, deadline: float) -> None:
        self._started = False
        await self._background.stop(deadline)
        await self.llm.stop()

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        self._config = config
        if not diff.touches("llm", "templates", "ask"):
            return
        if diff.touches("llm") and self.llm.configure(config.llm):
            self._background.spawn(self.llm.unload("llm settings changed"))
        if diff.touches("templates.file", "templates.enabled"):
            self._background.spawn(self._load_templates())
        if diff.touches("templates"):
            self._cache = LRUCache(maxsize=max(1, config.templates.cache_size))

    def on_memory_mode(self, mode: MemoryMode) -> None:
        """The LLM runs in FULL only; MINIMAL also leaves templates out (no embedding model)."""
        self._mode = mode
        self.llm.on_memory_mode(mode)

    def invalidate(self) -> None:
        """After an index change: titles and tags may differ, so cached matches go."""
        self._names = None
        self._cache.clear()

    async def warm(self) -> None:
        """Encode the templates' examples now, once the embedding model is loaded for search.

        Measured before this existed: the first template answer took 130 ms (the
        examples' batch) and the next ones 9-33 ms (benchmarks.ask).
        """
        templates = self._templates
        if templates is None or self._mode is MemoryMode.MINIMAL:
            return
        if self._matcher is None or self._matcher.templates is not templates:
            try:
                self._matcher = await self._pools.run(
                    "search", TemplateMatcher, templates, self._embedder.encode
                )
            except EmbedderError as error:
                log.warning("templates.warm_failed", reason=str(error))

    async def _load_templates(self) -> None:
        config = self._config.templates
        self._matcher = None
        self._cache.clear()
        if not config.enabled:
            self._templates, self.template_error = None, None
            return
        try:
            self._templates = await self._pools.run("io", load_templates, config.file)
            self.template_error = None
        except TemplateFileError as error:
            # Questions are still answered (by the LLM or extractively); the reason is kept.
            self._templates, self.template_error = None, str(error)
            log.error("templates.invalid", error=str(error))
            return
        log.info("templates.loaded", source=self._templates.source,
                 intents=len(self._templates.intents))  # fmt: skip

    # ---------------------------------------------------------------------- asking

    def parse(self, body: Mapping[str, Any]) -> AskRequest:
        """The question in a request body, or BadQuestion."""
        return parse_ask(body, self._config.ask)

    async def ask(self, request: AskRequest) -> AsyncIterator[Token | AskReply]:
        """Tokens as the LLM writes them (llm path only), then the reply; AskBusy past the queue."""
        if not self._started:
            raise AskUnavailable("asking is not available yet (the daemon is starting or stopping)")
        started = time.perf_counter()
        path: AnswerPath = "extractive"
        outcome = "error"
        counted = False
        try:
            reply = await self._by_template(request.question, started)
            if reply is None:
                async for event in self._by_passages(request.question, started):
                    if isinstance(event, AskReply):
                        reply = event
                    else:
                        yield event
            assert reply is not None
            path = reply.path
            outcome = "ok" if reply.path != "extractive" or self._expected(reply) else "fallback"
            self._answered[path] = self._answered.get(path, 0) + 1
            self._metrics.observe_ask(path, outcome, time.perf_counter() - started)
            counted = True  # before the last yield: the caller need not iterate past it
            yield reply
        except GeneratorExit:
            outcome = "cancelled"
            raise
        except AskBusy:
            path, outcome = "llm", "rejected"
            raise
        finally:
            if not counted:
                self._metrics.observe_ask(path, outcome, time.perf_counter() - started)

    def _expected(self, reply: AskReply) -> bool:
        """An extractive answer by design (no LLM configured, nothing found), not a fallback."""
        return self._config.llm.model is None or reply.answer == NOTHING

    # -------------------------------------------------------------------- templates

    async def _by_template(self, question: str, started: float) -> AskReply | None:
        if self._templates is None or not self._config.templates.enabled:
            return None
        if self._mode is MemoryMode.MINIMAL:
            return None  # matching needs the embedding model, which MINIMAL unloads
        try:
            match = await self._match(question, self._templates)
        except EmbedderError as error:
            log.warning("templates.skipped", reason=str(error))
            return None
        if match.intent is None:
            return None
        answer = await run_action(match.intent, match.slots, self._sources)
        total = time.perf_counter() - started
        return AskReply(
            question=question,
            answer=answer.answer,
            path="template",
            citations=answer.citations,
            reason=answer.note,
            template=match.intent.name,
            timings=Timings(total_seconds=total),
        )

    async def _match(self, question: str, templates: TemplateSet) -> Match:
        key = question.lower()
        capacity = self._config.templates.cache_size
        cached = self._cache.get(key) if capacity else None
        self._metrics.observe_cache(TEMPLATE_CACHE, cached is not None)
        if cached is not None:
            self._hits += 1
            return cached
        self._misses += 1
        if self._matcher is None or self._matcher.templates is not templates:
            self._matcher = await self._pools.run(
                "search", TemplateMatcher, templates, self._embedder.encode
            )
        if self._names is None:
            self._names = Names.of(await self._sources.notes())
        threshold = self._config.templates.threshold
        match = await self._pools.run(
            "search", self._matcher.match, question, self._names,
            self._embedder.encode_query, threshold,
        )  # fmt: skip
        if capacity:
            self._cache[key] = match
        self._metrics.cache_entries.labels(TEMPLATE_CACHE).set(len(self._cache))
        return match

    # --------------------------------------------------------------- llm / extractive

    async def _by_passages(self, question: str, started: float) -> AsyncIterator[Token | AskReply]:
        retrieval_started = time.perf_counter()
        passages = await self._sources.passages(question, self._config.ask.passages)
        retrieval = time.perf_counter() - retrieval_started
        run = _Generation(passages, self.llm.unavailable() if passages else NO_PASSAGE)
        if run.reason is None:
            try:
                run.generator = await self.llm.acquire()
            except GeneratorError as error:
                run.reason = str(error)
        if run.generator is not None:
            async for token in self._generate(run.generator, question, run):
                yield token
        checking = time.perf_counter()
        checked = await self._answer(question, run.text, run.shown, passages)
        stats = run.stats
        timings = Timings(
            retrieval_seconds=retrieval,
            prompt_tokens=run.prompt_tokens,
            first_token_seconds=None if stats is None else stats.first_token_seconds,
            generation_seconds=None if stats is None else stats.seconds,
            tokens=0 if stats is None else stats.tokens,
            check_seconds=time.perf_counter() - checking,
            total_seconds=time.perf_counter() - started,
        )
        answered = run.text is not None
        yield AskReply(
            question=question,
            answer=checked.answer,
            path="llm" if answered else "extractive",
            citations=checked.citations,
            sentences=checked.sentences,
            reason=None if answered else run.reason,
            model=str(run.generator.folder.path) if answered and run.generator else None,
            timings=timings,
        )

    async def _generate(
        self, generator: Generator, question: str, run: _Generation
    ) -> AsyncIterator[Token]:
        """The LLM's tokens as they come; `run` gets the text, or the reason there is none."""
        pieces: list[str] = []
        result: list[GenerationStats] = []
        try:
            async with self.llm.slot():
                prompt, run.shown = await self._prompt(generator, question, run.passages)
                run.prompt_tokens = len(prompt)
                async for piece in self.llm.stream(generator, prompt, result):
                    pieces.append(piece)
                    yield Token(piece)
        except GeneratorError as error:
            run.reason = str(error)
        except TimeoutError:
            run.reason = f"the LLM did not answer within {self._config.llm.timeout:g}s"
        run.stats = result[0] if result else None
        run.reason = run.reason or _finish_reason(run.stats, self._config.llm.timeout)
        text = "".join(pieces).strip()
        if run.reason is None and not text:
            run.reason = "the LLM gave an empty answer"
        run.text = text if run.reason is None else None

    async def _prompt(
        self, generator: Generator, question: str, passages: Sequence[Passage]
    ) -> tuple[list[int], list[Passage]]:
        config = self._config.llm
        budget = config.context_tokens - config.max_tokens

        def render() -> tuple[list[int], list[Passage]]:
            prompt = build_prompt(question, passages, generator.count_tokens, budget)
            return generator.render(prompt.messages), prompt.passages

        return await self._pools.run("llm", render)

    async def _answer(
        self,
        question: str,
        text: str | None,
        shown: Sequence[Passage],
        passages: Sequence[Passage],
    ) -> CheckedAnswer:
        """The LLM's answer checked against what it was shown, or an extractive one."""
        encode = self._encoder()
        considered = shown if text else passages
        try:
            table, question_vector = await self._pools.run(
                "search", self._evidence, question, considered, encode
            )
        except EmbedderError as error:
            log.warning("ask.embedding_unavailable", reason=str(error))
            encode = None
            table, question_vector = await self._pools.run(
                "search", self._evidence, question, considered, None
            )
        threshold = self._config.ask.support_threshold
        if text:
            return await self._pools.run(
                "search", check_answer, text, considered, table, encode, threshold
            )
        count = self._config.ask.extractive_sentences
        return extractive_answer(question, question_vector, considered, table, count)

    def _encoder(self) -> BatchEncoder | None:
        return None if self._mode is MemoryMode.MINIMAL else self._sentences

    def _evidence(
        self, question: str, passages: Sequence[Passage], encode: BatchEncoder | None
    ) -> tuple[SentenceTable, npt.NDArray[np.float32] | None]:
        table = sentence_table(passages, encode)
        vector = self._embedder.encode_query(question) if encode is not None else None
        return table, vector

    # ---------------------------------------------------------------------- reports

    async def unload_models(self) -> dict[str, Any]:
        freed = await self.llm.unload("requested (jarvisctl gc --models)")
        return {"unloaded": ["llm"] if freed else [], "freed_bytes": freed}

    @property
    def started(self) -> bool:
        return self._started

    def stats(self) -> dict[str, Any]:
        lookups = self._hits + self._misses
        templates = self._templates
        return {
            "answered": dict(self._answered),
            "memory_mode": self._mode.value,
            "templates": {
                "enabled": self._config.templates.enabled,
                "source": None if templates is None else templates.source,
                "intents": [] if templates is None else [i.name for i in templates.intents],
                "error": self.template_error,
                "threshold": self._config.templates.threshold,
                "cache": {
                    "size": len(self._cache),
                    "capacity": self._config.templates.cache_size,
                    "hits": self._hits,
                    "misses": self._misses,
                    "hit_rate": round(self._hits / lookups, 4) if lookups else None,
                },
            },
            "llm": self.llm.describe(),
        }

    def status(self) -> dict[str, Any]:
        templates = self._templates
        return {
            "state": "ready" if self._started else "stopped",
            "llm": self.llm.state,
            "llm_loaded": self.llm.loaded,
            "templates": 0 if templates is None else len(templates.intents),
            "templates_error": self.template_error,
        }


@dataclass
class _Generation:
    """One question's trip through the LLM: what it was shown, what came back, or why not."""

    passages: Sequence[Passage]
    reason: str | None
    generator: Generator | None = None
    shown: Sequence[Passage] = ()
    prompt_tokens: int = 0
    stats: GenerationStats | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        self.shown = self.passages


def _finish_reason(stats: GenerationStats | None, timeout: float) -> str | None:
    if stats is None:
        return "the LLM returned nothing"
    if stats.finish == "timeout":
        return f"generation timed out after {timeout:g}s (llm.timeout)"
    if stats.finish == "cancelled":
        return "generation was stopped (the memory mode left FULL, or the daemon is stopping)"
    return None

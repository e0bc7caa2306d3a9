"""The LLM's life in the daemon: loaded on the first question that needs it, unloaded when idle.

- Loading and generating run in the `llm` pool, never on the event loop.
- At most `llm.max_concurrent` answers generate at once; `llm.queue` more
  may wait; one more is refused (`AskBusy`, a 429 at the API).
- It unloads after `llm.idle_unload` without a question, when the memory
  mode leaves FULL (and stays away until FULL comes back), on request
  (`jarvisctl gc --models`), and when `llm.*` changes on reload.
- A load that failed is not retried on every question: only once the folder
  (names, sizes, mtimes of its config and weights) or the config changes.
- Tokens cross from the pool thread to the loop through a queue; closing
  the stream (a client that went away) sets the stop flag the backend
  checks before every next token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jarvisd.ask.errors import AskBusy, GeneratorError
from jarvisd.ask.folder import inspect_folder
from jarvisd.ask.generator import (
    GenerationSettings,
    GenerationStats,
    Generator,
    load_generator,
    resolve_runtime,
)
from jarvisd.config import LlmConfig
from jarvisd.logs import get_logger
from jarvisd.observe.memory import MemoryMode
from jarvisd.observe.metrics import Metrics
from jarvisd.pools import Pools

log = get_logger("jarvisd.ask.llm")

GRACE_SECONDS = 5.0  # past llm.timeout, the loop stops waiting for a stuck pool thread
_END = object()


class LlmRuntime:
    def __init__(self, config: LlmConfig, pools: Pools, metrics: Metrics) -> None:
        self._config = config
        self._pools = pools
        self._metrics = metrics
        self._generator: Generator | None = None
        self._load_lock = asyncio.Lock()
        self._failure: tuple[object, str] | None = None  # (what failed to load, why)
        self._mode = MemoryMode.FULL
        self._active = 0
        self._waiting = 0
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._last_used = time.monotonic()
        self._idle: asyncio.TimerHandle | None = None
        self._stops: set[threading.Event] = set()
        self._tasks: set[asyncio.Task[int]] = set()  # unloads under way (kept referenced)
        self.state = "not configured" if config.model is None else "not loaded"

    # ------------------------------------------------------------------ availability

    def unavailable(self) -> str | None:
        """Why no LLM may answer now, by config and memory mode (None: it may).

        A failed load is `acquire`'s to report: telling whether the folder
        changed since takes file I/O, which does not run on the loop.
        """
        if self._config.model is None:
            return "no LLM is configured (llm.model is null)"
        if self._mode is not MemoryMode.FULL:
            return f"the LLM runs only in FULL memory mode, and the daemon is in {self._mode.value}"
        return None

    def _failure_key(self) -> object:
        config = self._config
        try:
            signature: object = inspect_folder(config.model).signature if config.model else None
        except GeneratorError as error:
            signature = str(error)
        return (config.model, config.runtime, signature)

    async def acquire(self) -> Generator:
        """The loaded model (loading it now if need be); GeneratorError says why not."""
        async with self._load_lock:
            if self._generator is not None:
                return self._generator
            reason = self.unavailable()
            if reason is not None:
                raise GeneratorError(reason)
            key = await self._pools.run("io", self._failure_key)
            if self._failure is not None and self._failure[0] == key:
                raise GeneratorError(self._failure[1])  # nothing changed since it failed
            self.state = "loading"
            started = time.perf_counter()
            try:
                generator = await self._pools.run("llm", load_generator, self._config)
            except GeneratorError as error:
                self._failure = (key, str(error))
                self.state = f"failed: {error}"
                log.error("llm.load_failed", model=str(self._config.model), error=str(error))
                raise
            self._failure = None
            self._generator = generator
            self.state = "loaded"
            memory = generator.memory_bytes()
            self._metrics.set_llm(True, float(memory))
            log.info(
                "llm.loaded",
                model=str(generator.folder.path),
                runtime=generator.runtime,
                memory_bytes=memory,
                seconds=round(time.perf_counter() - started, 2),
            )
            return generator

    # ------------------------------------------------------------------ generation

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of llm.max_concurrent generation slots; AskBusy when the queue is full."""
        if self._slots.locked() and self._waiting >= self._config.queue:
            raise AskBusy(
                f"the LLM is busy: {self._active} answering and {self._waiting} waiting "
                f"(llm.max_concurrent {self._config.max_concurrent}, llm.queue "
                f"{self._config.queue}); ask again in a moment",
                active=self._active,
                waiting=self._waiting,
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._slots.release()
            self._touch()

    async def stream(
        self, generator: Generator, prompt: list[int], result: list[GenerationStats]
    ) -> AsyncIterator[str]:
        """The answer's text as it comes; `result` gets the stats once generation ended.

        Closing this iterator early stops the generation within one token.
        GeneratorError when generation failed; TimeoutError when the pool thread
        did not come back in time.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        config = self._config
        settings = GenerationSettings(
            config.max_tokens, config.temperature, time.monotonic() + config.timeout
        )

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        self._stops.add(stop)
        work = asyncio.ensure_future(
            self._pools.run("llm", generator.generate, prompt, settings, on_text, stop)
        )
        work.add_done_callback(lambda _: queue.put_nowait(_END))
        give_up = settings.deadline + GRACE_SECONDS
        try:
            while True:
                item = await asyncio.wait_for(queue.get(), max(0.01, give_up - time.monotonic()))
                if item is _END:
                    break
                assert isinstance(item, str)
                yield item
            stats = work.result()
        except Exception as error:
            if isinstance(error, GeneratorError | TimeoutError):
                raise
            raise GeneratorError(f"generation failed: {type(error).__name__}: {error}") from error
        finally:
            stop.set()
            self._stops.discard(stop)
            if not work.done():
                work.add_done_callback(self._report_cancelled)
        self._count(stats)
        result.append(stats)

    def _count(self, stats: GenerationStats) -> None:
        self._metrics.llm_tokens.inc(stats.tokens)
        if stats.first_token_seconds is not None:
            self._metrics.llm_first_token.observe(stats.first_token_seconds)

    def _report_cancelled(self, work: asyncio.Future[GenerationStats]) -> None:
        """The generation of a stream closed early, once its thread came back."""
        if work.cancelled() or work.exception() is not None:
            return
        stats = work.result()
        self._count(stats)
        log.info(
            "ask.cancelled",
            tokens=stats.tokens,
            tokens_after_stop=stats.tokens_after_stop,
            finish=stats.finish,
        )

    # ------------------------------------------------------------------- unloading

    def _touch(self) -> None:
        self._last_used = time.monotonic()
        if self._idle is not None:
            self._idle.cancel()
        if self._config.idle_unload > 0 and self._generator is not None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self._config.idle_unload, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        if self._active or self._waiting:
            return  # the next answer's end re-arms the timer
        idle = time.monotonic() - self._last_used
        if idle >= self._config.idle_unload - 0.05:
            self._unload_soon(f"idle for {idle:.0f}s")

    def _unload_soon(self, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self.unload(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def unload(self, reason: str) -> int:
        """Free the model; the bytes its weights held (0 when none was loaded)."""
        async with self._load_lock:
            generator, self._generator = self._generator, None
            if generator is None:
                return 0
            freed = generator.memory_bytes()
            await self._pools.run("llm", generator.close)
            self.state = f"unloaded ({reason})"
            self._metrics.set_llm(False)
            log.info("llm.unloaded", reason=reason, memory_bytes=freed)
            return freed

    def on_memory_mode(self, mode: MemoryMode) -> None:
        self._mode = mode
        if mode is not MemoryMode.FULL and self._generator is not None:
            self.stop_generating()  # answers being generated end now, extractively
            self._unload_soon(f"memory mode {mode.value}")

    def configure(self, config: LlmConfig) -> bool:
        """Apply a new llm section; True when the loaded model must go (model, runtime, threads)."""
        old, self._config = self._config, config
        if old.max_concurrent != config.max_concurrent:
            self._slots = asyncio.Semaphore(config.max_concurrent)  # new answers, new slots
            self._pools.resize("llm", config.max_concurrent)
        self._failure = None
        if self._generator is None:
            self.state = "not configured" if config.model is None else "not loaded"
        if (old.model, old.runtime, old.threads) != (config.model, config.runtime, config.threads):
            return True
        self._touch()
        return False

    def stop_generating(self) -> None:
        """Every answer being generated ends at its next token (and becomes extractive)."""
        for stop in list(self._stops):
            stop.set()

    async def stop(self) -> None:
        self.stop_generating()
        if self._idle is not None:
            self._idle.cancel()
        await self.unload("stopping")

    # --------------------------------------------------------------------- reports

    @property
    def loaded(self) -> bool:
        return self._generator is not None

    def memory_report(self) -> dict[str, Any]:
        generator = self._generator
        config = self._config
        report: dict[str, Any] = {
            "loaded": generator is not None,
            "model": None if config.model is None else str(config.model),
            "runtime": resolve_runtime(config.runtime),
            "state": self.state,
            "memory_bytes": 0 if generator is None else generator.memory_bytes(),
        }
        if generator is not None:
            report.update(generator.memory_report())
        return report

    def describe(self) -> dict[str, Any]:
        return {
            **self.memory_report(),
            "active": self._active,
            "waiting": self._waiting,
            "idle_seconds": round(time.monotonic() - self._last_used, 1),
            "unavailable": self.unavailable(),
        }

"""The `Generator` seam: one Protocol, backends chosen by `llm.runtime`, imported lazily.

`transformers` (torch, already the embedding model's runtime) and `mlx`
(mlx-lm) load the same folder (`jarvisctl model import` writes it). `auto`
picks mlx on Apple Silicon and transformers elsewhere: the Linux `mlx-cpu`
wheel ships a reference BLAS, measured here at ~5 GFLOPS against torch's
~87 (SmolLM2-135M: 2.5 tokens/s and 10 s to the first token of a 37-token
prompt, against 10-12 tokens/s with torch on one thread).

A backend's `generate` is blocking and runs in the `llm` pool. It calls
`on_text` with each new piece of text and checks `stop` before every next
token, so a cancelled answer costs at most the token being computed.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from jarvisd.ask.errors import GeneratorError
from jarvisd.ask.folder import ModelFolder, inspect_folder
from jarvisd.config import LlmConfig

# Before transformers or huggingface_hub are imported anywhere: never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

Runtime = Literal["transformers", "mlx"]
Message = dict[str, str]
TextSink = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    max_tokens: int
    temperature: float
    deadline: float  # time.monotonic() past which generation stops ("timeout")


class GenerationStats:
    """Counted by the backend while it generates; read once it returns."""

    def __init__(self, stop: threading.Event, deadline: float) -> None:
        self._stop = stop
        self._deadline = deadline
        self.started = time.monotonic()
        self.tokens = 0
        self.first_token_seconds: float | None = None
        self.tokens_after_stop = 0  # tokens whose step began after `stop` was set (a cancel's cost)
        self._stopped_by_step = False  # `stop` was set when the step now computing began
        self.finish = "stop"  # stop (end of answer), length, cancelled, timeout
        self.seconds = 0.0

    def step_begins(self) -> None:
        """The backend is about to compute its next token: call once before each step."""
        self._stopped_by_step = self._stop.is_set()

    def token(self) -> None:
        """One more token; call before handing its text on.

        It counts as computed after the stop only if its step began after the stop was set:
        transformers asks the stopping criterion before it hands the token on, so a stop set
        in between would otherwise count the token already computed as well as the one
        after it (2 at high contention, where the wasted work is 1 step)."""
        self.tokens += 1
        if self.first_token_seconds is None:
            self.first_token_seconds = time.monotonic() - self.started
        if self._stopped_by_step:
            self.tokens_after_stop += 1

    def should_stop(self) -> bool:
        """Checked before every next token."""
        if self._stop.is_set():
            self.finish = "cancelled"
            return True
        if time.monotonic() >= self._deadline:
            self.finish = "timeout"
            return True
        return False

    def done(self, max_tokens: int) -> GenerationStats:
        self.seconds = time.monotonic() - self.started
        if self.finish == "stop" and self.tokens >= max_tokens:
            self.finish = "length"
        return self


class Generator(Protocol):
    @property
    def runtime(self) -> Runtime: ...

    @property
    def folder(self) -> ModelFolder: ...

    def render(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids, through the model's own chat template."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        prompt: list[int],
        settings: GenerationSettings,
        on_text: TextSink,
        stop: threading.Event,
    ) -> GenerationStats: ...

    def memory_bytes(self) -> int: ...

    def memory_report(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def resolve_runtime(requested: str) -> Runtime:
    if requested == "mlx":
        return "mlx"
    if requested == "transformers":
        return "transformers"
    return "mlx" if apple_silicon() else "transformers"


def load_generator(config: LlmConfig) -> Generator:
    """The configured model, loaded (blocking: seconds). GeneratorError says why not."""
    if config.model is None:
        raise GeneratorError("no LLM is configured (llm.model is null)")
    folder = inspect_folder(config.model)
    runtime = resolve_runtime(config.runtime)
    if runtime == "mlx":
        try:
            from jarvisd.ask.mlx_backend import MlxGenerator
        except ImportError as error:
            raise GeneratorError(
                f"llm.runtime is mlx, but mlx-lm cannot be imported ({error}): reinstall "
                "jarvisd's dependencies, or set llm.runtime: transformers"
            ) from error
        return MlxGenerator(folder, config)
    try:
        from jarvisd.ask.transformers_backend import TransformersGenerator
    except ImportError as error:
        raise GeneratorError(
            f"cannot import transformers ({error}): reinstall jarvisd's dependencies"
        ) from error
    return TransformersGenerator(folder, config)

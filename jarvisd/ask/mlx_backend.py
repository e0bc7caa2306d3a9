"""The `mlx` runtime: mlx-lm on Apple Silicon (Metal), or on the CPU where only mlx-cpu exists.

`stream_generate` yields one token at a time; leaving its loop stops the
generation, so the stop check runs between any two tokens.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from typing import Any

from jarvisd.ask.errors import GeneratorError
from jarvisd.ask.folder import ModelFolder
from jarvisd.ask.generator import (
    GenerationSettings,
    GenerationStats,
    Message,
    Runtime,
    TextSink,
)
from jarvisd.config import LlmConfig


class MlxGenerator:
    def __init__(self, folder: ModelFolder, config: LlmConfig) -> None:
        from mlx_lm import load

        self._folder = folder
        try:
            loaded: Any = load(str(folder.path))
        except Exception as error:  # mlx-lm raises many kinds; all mean "cannot load"
            raise GeneratorError(f"cannot load the LLM in {folder.path}: {error}") from error
        self._model: Any = loaded[0]
        self._tokenizer: Any = loaded[1]

    @property
    def runtime(self) -> Runtime:
        return "mlx"

    @property
    def folder(self) -> ModelFolder:
        return self._folder

    def render(self, messages: Sequence[Message]) -> list[int]:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        else:
            text = "\n\n".join(message["content"] for message in messages) + "\n\nAnswer:"
        ids: list[int] = tokenizer.encode(str(text), add_special_tokens=False)
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def generate(
        self,
        prompt: list[int],
        settings: GenerationSettings,
        on_text: TextSink,
        stop: threading.Event,
    ) -> GenerationStats:
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        stats = GenerationStats(stop, settings.deadline)
        responses = stream_generate(
            self._model,
            self._tokenizer,
            prompt,
            max_tokens=settings.max_tokens,
            sampler=make_sampler(settings.temperature),
        )
        stats.step_begins()
        for response in responses:
            stats.token()
            if response.text:
                on_text(str(response.text))
            if stats.should_stop():
                break
            stats.step_begins()
        return stats.done(settings.max_tokens)

    def memory_bytes(self) -> int:
        model = getattr(self, "_model", None)
        if model is None:
            return 0
        from mlx.utils import tree_flatten

        leaves: Any = tree_flatten(model.parameters())
        return int(sum(array.nbytes for _, array in leaves))

    def memory_report(self) -> dict[str, Any]:
        import mlx.core as mx

        report: dict[str, Any] = {"device": str(mx.default_device())}
        active = getattr(mx, "get_active_memory", None)
        peak = getattr(mx, "get_peak_memory", None)
        if active is not None:
            report["active_bytes"] = int(active())  # Metal (or CPU) buffers mlx holds
        if peak is not None:
            report["peak_bytes"] = int(peak())
        return report

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
        gc.collect()
        try:
            import mlx.core as mx

            clear = getattr(mx, "clear_cache", None)
            if clear is not None:
                clear()
        except ImportError:
            pass

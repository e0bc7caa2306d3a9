"""The `transformers` runtime: torch on the CPU (or CUDA/MPS when torch sees one).

`model.generate` with a streamer that hands each token's text on and a
stopping criterion that asks `GenerationStats.should_stop` after every token,
so a cancel or a timeout stops it within one token. Torch threads are set
per calling thread (`llm.threads`), so generation never widens the embedding
model's OpenMP team (see `model/intraop.py`).
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
from jarvisd.logs import get_logger
from jarvisd.model.allocator import trim

log = get_logger("jarvisd.ask.transformers")

# Tokens held back while they decode to an incomplete character (a split UTF-8
# sequence); a character has at most 4 bytes, so never more than 3 are held.
_INCOMPLETE = "\ufffd"
_MAX_HELD = 3


class TransformersGenerator:
    def __init__(self, folder: ModelFolder, config: LlmConfig) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        progress: Any = transformers.utils.logging
        progress.disable_progress_bar()  # a progress bar in the daemon's log is noise
        progress.set_verbosity_error()
        self._folder = folder
        self._threads = config.threads
        self._device = _device(torch)
        torch.set_num_threads(self._threads)
        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(
                str(folder.path), local_files_only=True
            )
            model: Any = AutoModelForCausalLM.from_pretrained(
                str(folder.path), local_files_only=True, dtype="auto"
            )
        except Exception as error:  # transformers raises many kinds; all mean "cannot load"
            raise GeneratorError(f"cannot load the LLM in {folder.path}: {error}") from error
        self._model: Any = model.to(self._device).eval()
        self._eos = _eos_ids(self._model, self._tokenizer)

    @property
    def runtime(self) -> Runtime:
        return "transformers"

    @property
    def folder(self) -> ModelFolder:
        return self._folder

    def render(self, messages: Sequence[Message]) -> list[int]:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            try:
                text = tokenizer.apply_chat_template(
                    list(messages), tokenize=False, add_generation_prompt=True
                )
            except Exception:  # a template without a system role (Gemma): fold it in
                text = tokenizer.apply_chat_template(
                    _without_system(messages), tokenize=False, add_generation_prompt=True
                )
        else:
            text = "\n\n".join(message["content"] for message in messages) + "\n\nAnswer:"
        ids: list[int] = tokenizer(str(text), add_special_tokens=False)["input_ids"]
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self,
        prompt: list[int],
        settings: GenerationSettings,
        on_text: TextSink,
        stop: threading.Event,
    ) -> GenerationStats:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        torch.set_num_threads(self._threads)  # this thread's team (the pool may be new)
        stats = GenerationStats(stop, settings.deadline)
        streamer = _Streamer(self._tokenizer, stats, on_text)
        sampling = settings.temperature > 0
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=settings.max_tokens,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_p=0.95 if sampling else None,
            top_k=None,
            eos_token_id=self._eos,
            pad_token_id=self._eos[0] if self._eos else None,
        )
        inputs = torch.tensor([prompt], dtype=torch.long, device=self._device)
        with torch.inference_mode():
            self._model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                generation_config=config,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_Stop(stats)]),
            )
        streamer.flush()
        return stats.done(settings.max_tokens)

    def memory_bytes(self) -> int:
        model = getattr(self, "_model", None)
        if model is None:
            return 0
        tensors = (*model.parameters(), *model.buffers())
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def memory_report(self) -> dict[str, Any]:
        model = getattr(self, "_model", None)
        return {
            "device": self._device,
            "dtype": None if model is None else str(model.dtype).removeprefix("torch."),
            "threads": self._threads,
        }

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
        gc.collect()
        trim()


class _Streamer:
    """transformers' streamer interface: `put` gets the prompt once, then each new token."""

    def __init__(self, tokenizer: Any, stats: GenerationStats, on_text: TextSink) -> None:
        self._tokenizer = tokenizer
        self._stats = stats
        self._on_text = on_text
        self._prompt_seen = False
        self._ids: list[int] = []
        self._sent = 0  # characters of the decoded answer already handed on
        self._held = 0  # tokens since the last piece handed on

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            self._stats.step_begins()  # the first token's step (the prompt is in)
            return
        for token in value.reshape(-1).tolist():
            self._stats.token()
            self._ids.append(int(token))
        self._emit(final=False)
        self._stats.step_begins()  # generate's loop goes on to the next forward pass

    def end(self) -> None:
        self.flush()

    def flush(self) -> None:
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        # Decoding the whole answer each time keeps spaces and multi-token characters
        # right; answers are a few hundred tokens, so it costs microseconds.
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if not final and text.endswith(_INCOMPLETE) and self._held < _MAX_HELD:
            self._held += 1
            return
        self._held = 0
        if len(text) > self._sent:
            piece, self._sent = text[self._sent :], len(text)
            self._on_text(piece)


class _Stop:
    """A stopping criterion: asked after every token, stops on cancel or timeout."""

    def __init__(self, stats: GenerationStats) -> None:
        self._stats = stats

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self._stats.should_stop()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def _device(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in configured if isinstance(configured, list) else [configured]:
        if isinstance(value, int):
            ids.append(value)
    if isinstance(tokenizer.eos_token_id, int):
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def _without_system(messages: Sequence[Message]) -> list[Message]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest:
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest

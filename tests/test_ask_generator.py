"""Both runtimes on a tiny random-weight model built here: load, prompt, generate, stop, unload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_llm import build_tiny_model

from jarvisd.ask.generator import GenerationSettings, load_generator, resolve_runtime
from jarvisd.config import LlmConfig

pytestmark = pytest.mark.slow
MESSAGES = [
    {"role": "system", "content": "Answer from the passages."},
    {"role": "user", "content": "How long should the espresso shot take?"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def settings(max_tokens: int, seconds: float = 60.0) -> GenerationSettings:
    return GenerationSettings(max_tokens, 0.0, time.monotonic() + seconds)


def test_auto_picks_transformers_off_apple_silicon() -> None:
    assert resolve_runtime("auto") == "transformers"  # this machine is Linux
    assert resolve_runtime("mlx") == "mlx"


@pytest.mark.parametrize("runtime", ["transformers", "mlx"])
def test_generate_streams_text_and_stops_within_one_token(tiny: Path, runtime: str) -> None:
    generator = load_generator(LlmConfig(model=tiny, runtime=runtime))
    try:
        assert generator.runtime == runtime
        prompt = generator.render(MESSAGES)
        assert len(prompt) > 10 and generator.count_tokens("espresso shot") > 0
        assert generator.memory_bytes() > 0
        pieces: list[str] = []
        stats = generator.generate(prompt, settings(12), pieces.append, threading.Event())
        assert stats.finish == "length" and stats.tokens == 12
        assert stats.first_token_seconds is not None and "".join(pieces)

        stop = threading.Event()
        seen: list[str] = []

        def cancel_after_three(piece: str) -> None:
            seen.append(piece)
            if len(seen) == 3:
                stop.set()  # as a client that went away does, from another thread

        stats = generator.generate(prompt, settings(500), cancel_after_three, stop)
        assert stats.finish == "cancelled"
        assert stats.tokens_after_stop <= 1 and stats.tokens <= 4

        expired = settings(500, seconds=0.0)
        stats = generator.generate(prompt, expired, seen.append, threading.Event())
        assert stats.finish == "timeout" and stats.tokens == 1
    finally:
        generator.close()
    assert generator.memory_bytes() == 0

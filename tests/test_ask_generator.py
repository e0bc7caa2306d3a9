"""Both runtimes on a tiny random-weight model built here: load, prompt, generate, stop, unload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_llm import build_tiny_model

from jarvisd.ask.generator import (
    GenerationSettings,
    GenerationStats,
    load_generator,
    resolve_runtime,
)
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
        assert stats.finish == "cancelled" and stats.tokens <= 4
        # Set while a token's text was handed on: transformers has already asked its
        # stopping criterion for that step, so exactly one more step runs; mlx's loop asks
        # right after the text, so none does.
        assert stats.tokens_after_stop == (1 if runtime == "transformers" else 0)

        expired = settings(500, seconds=0.0)
        stats = generator.generate(prompt, expired, seen.append, threading.Event())
        assert stats.finish == "timeout" and stats.tokens == 1
    finally:
        generator.close()
    assert generator.memory_bytes() == 0


def test_a_stop_between_the_criterion_and_the_hand_on_costs_one_step() -> None:
    """The order transformers' generate loop runs in: forward pass, stopping criterion,
    then the streamer gets the token. A stop that lands between the criterion and the
    hand-on costs the one step that begins after it, not the token already computed
    (it counted 2 on a contended machine: test_ask_daemon's hang-up test failed on it)."""
    stop = threading.Event()
    stats = GenerationStats(stop, deadline=float("inf"))
    stats.step_begins()
    assert not stats.should_stop()  # token 1's criterion
    stats.token()
    stats.step_begins()
    assert not stats.should_stop()  # token 2's criterion
    stop.set()  # the client hangs up now
    stats.token()  # token 2, computed before the stop, handed on after it
    stats.step_begins()  # token 3's step begins with the stop set
    assert stats.should_stop() and stats.finish == "cancelled"
    stats.token()
    assert stats.tokens == 3 and stats.tokens_after_stop == 1

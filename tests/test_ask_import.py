"""`jarvisctl model import` on a tiny GGUF written here with the `gguf` package, and on folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_llm import build_tiny_model, write_tiny_gguf

from jarvisd.ask.folder import inspect_folder
from jarvisd.ask.importer import ImportFailed, import_model
from jarvisd.testing import ctl

pytestmark = pytest.mark.slow


def test_a_gguf_imports_to_a_folder_that_computes_what_the_gguf_does(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    dest = tmp_path / "model"
    result = ctl(None, "model", "import", str(gguf), str(dest), "--dtype", "float32", timeout=300)
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert [line[:5] for line in steps] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert "architecture llama, 20 tensors" in steps[0] and "with its chat template" in steps[1]
    folder = inspect_folder(dest)
    assert folder.chat_template and folder.model_type == "llama"
    assert not dest.with_name("model.partial").exists()

    text = "Pull the espresso shot for 28 seconds."
    original = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=gguf.name)
    converted = AutoModelForCausalLM.from_pretrained(str(dest), local_files_only=True)
    reference = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(dest), local_files_only=True)
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == reference(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, converted(ids).logits, atol=1e-5)

    # bf16 (the default) halves the weights; a second import into a full DEST needs --force.
    half = tmp_path / "half"
    import_model(gguf, half, lambda line: None)
    assert inspect_folder(half).weight_bytes < folder.weight_bytes * 0.6
    with pytest.raises(ImportFailed, match="not empty"):
        import_model(gguf, half, lambda line: None)
    import_model(gguf, half, lambda line: None, force=True)


def test_an_architecture_it_cannot_convert_is_a_clear_error(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "odd.gguf", architecture="nonesuch")
    result = ctl(None, "model", "import", str(gguf), str(tmp_path / "out"), timeout=300)
    assert result.returncode == 1
    assert "cannot convert architecture 'nonesuch'" in result.stderr
    assert "llama" in result.stderr  # it says which it can convert
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_file_that_is_no_gguf_and_a_missing_source_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ImportFailed, match="not a GGUF file"):
        import_model(junk, tmp_path / "out", lambda line: None)
    with pytest.raises(ImportFailed, match="does not exist"):
        import_model(tmp_path / "nothing.gguf", tmp_path / "out", lambda line: None)


def test_a_model_folder_is_checked_and_copied(tmp_path: Path) -> None:
    source = build_tiny_model(tmp_path / "source")
    lines: list[str] = []
    folder = import_model(source, tmp_path / "copy", lines.append)
    assert folder.chat_template and folder.weight_bytes == inspect_folder(source).weight_bytes
    assert any("tokenizer loads (with its chat template)" in line for line in lines)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    with pytest.raises(ImportFailed, match="no weights"):
        import_model(bare, tmp_path / "out", lambda line: None)

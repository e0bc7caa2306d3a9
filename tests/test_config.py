"""The config model: documented defaults, located errors, diffs, masking, units."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jarvisd.config import (
    MASK,
    Config,
    ConfigError,
    diff_configs,
    flatten,
    load_config,
    masked,
    parse_config,
    parse_schedule,
)
from jarvisd.config.docs import render_example
from jarvisd.config.loading import EX_CONFIG, MAX_CONFIG_BYTES
from jarvisd.units import format_duration, format_size, parse_duration, parse_size

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "etc" / "jarvis.yaml"


def leaf_keys(data: object, prefix: str = "") -> set[str]:
    if isinstance(data, dict):
        keys: set[str] = set()
        for key, value in data.items():
            keys |= leaf_keys(value, f"{prefix}.{key}" if prefix else str(key))
        return keys
    return {prefix}


def test_etc_jarvis_yaml_is_the_rendered_model() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render_example(), (
        "etc/jarvis.yaml is out of date: run `jarvisd --print-default-config > etc/jarvis.yaml`"
    )


def test_etc_jarvis_yaml_documents_every_key_with_its_default() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert load_config(EXAMPLE) == Config()
    documented = leaf_keys(yaml.safe_load(text))
    assert documented == set(flatten(Config()))


def test_every_field_has_a_description() -> None:
    from pydantic import BaseModel

    def walk(model: type[BaseModel], path: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{path}.{name}")
            else:
                assert info.description, f"{path}.{name} has no description"

    walk(Config, "config")


def test_no_file_and_empty_file_mean_all_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_config(None) == Config() == load_config(empty)
    example = Config().vaults[0].root
    assert example == REPO / "jarvisd" / "example_vault"
    assert example.is_dir() and any(example.rglob("*.md"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("storage:\n  threads: 0\n", "storage.threads (line 2)"),
        ("storage:\n  thread: 2\n", "storage.thread (line 2): unknown key"),
        ("search:\n  max_limit: lots\n", "search.max_limit (line 2)"),
        ("indexing:\n  debounce: soon\n", "indexing.debounce (line 2): expected a duration"),
        ("storage:\n  memory_limit: 2XB\n", "storage.memory_limit (line 2): expected a size"),
        ("schedule:\n  maintenance: '0 99 * * *'\n", "schedule.maintenance (line 2)"),
        (
            "alerts:\n  rules:\n    - name: a\n      metric: bogus\n      threshold: 1\n",
            "alerts.rules[0].metric (line 4): unknown metric 'bogus'",
        ),
        ("vaults: []\n", "vaults (line 1): at least one vault"),
        ("indexing: {chunk_tokens: 64, chunk_overlap: 64}\n", "indexing (line 1)"),
        ("metrics:\n  listen: localhost\n", "metrics.listen (line 2): expected HOST:PORT"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("storage:\n  threads: [1,\n", "malformed YAML (line 3"),
    ],
)
def test_errors_name_the_key_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.yaml")
    assert expected in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("test.yaml")


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("storage:\n  threads: 0\nsearch:\n  nope: 1\n")
    assert len(caught.value.problems) == 2


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"storage:\n  threads: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_yaml_is_parsed_safely() -> None:
    with pytest.raises(ConfigError, match="malformed YAML"):
        parse_config("storage: !!python/object/apply:os.system ['true']\n")


def test_check_config_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("search: {default_limit: 5}\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {default_limit: -5}\n", encoding="utf-8")
    run = [sys.executable, "-m", "jarvisd", "--check-config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert failed.returncode == EX_CONFIG == 78
    assert "search.default_limit (line 1)" in failed.stderr


def test_daemon_refuses_a_bad_file_with_the_same_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage:\n  hnsw: {m: 1}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "jarvisd", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 78
    assert "storage.hnsw.m (line 2)" in result.stderr


def test_diff_reports_changes_and_keeps_restart_only_keys() -> None:
    old = Config()
    new = parse_config(
        "search: {default_limit: 5}\n"
        "control: {socket: /tmp/elsewhere.sock}\n"
        "storage: {database: /tmp/other.duckdb}\n"
        "gc: {thresholds: [1000, 20, 20]}\n"
    )
    applied, diff = diff_configs(old, new)
    assert diff.changed == ["gc.thresholds", "search.default_limit"]
    assert diff.restart_required == ["control.socket", "storage.database"]
    assert applied.search.default_limit == 5
    assert applied.control.socket == old.control.socket
    assert applied.storage.database == old.storage.database
    assert diff.touches("search") and not diff.touches("embedding")


def test_diff_of_identical_configs_is_empty() -> None:
    _applied, diff = diff_configs(Config(), Config())
    assert diff.empty


def test_secrets_are_masked() -> None:
    config = parse_config("graph: {neo4j: {password: hunter2}}\n")
    shown = masked(config)
    assert shown["graph"]["neo4j"]["password"] == MASK
    assert "hunter2" not in str(shown)
    assert masked(Config())["graph"]["neo4j"]["password"] is None


def test_paths_expand_user_and_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_TEST_DIR", "/srv/notes")
    config = parse_config(
        "vaults: [{name: a, path: $JARVIS_TEST_DIR/vault}]\nstorage: {database: ~/j.duckdb}\n"
    )
    assert config.vaults[0].root == Path("/srv/notes/vault")
    assert config.database_path == Path.home() / "j.duckdb"


def test_units_round_trip() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("5m") == 300
    assert parse_duration(7) == 7.0
    assert format_duration(3600) == "1h"
    assert format_duration(0.25) == "250ms"
    assert parse_size("512MB") == 512_000_000
    assert parse_size("64KiB") == 65536
    assert format_size(2_000_000_000) == "2GB"
    for bad in ("-1s", "soon", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_size("12 parsecs")


def test_schedules() -> None:
    assert parse_schedule("15m") == ("interval", 900.0)
    assert parse_schedule("0 3 * * sun") == ("cron", "0 3 * * sun")
    assert parse_schedule(None) is None
    assert parse_schedule("off") is None
    with pytest.raises(ValueError):
        parse_schedule("0s")


def test_an_llm_key_of_an_earlier_example_file_is_a_located_unknown_key() -> None:
    # An earlier etc/jarvis.yaml documented `llm.enabled`, which never did anything;
    # the llm section now configures the real feature, and that key is refused.
    text = "search:\n  default_limit: 5\nllm:\n  enabled: true\n  model: /nowhere\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "old.yaml")
    (problem,) = caught.value.problems
    assert problem.startswith("llm.enabled (line 4): unknown key")


@pytest.mark.parametrize(
    ("metric", "written", "compared"),
    [
        ("rss_bytes", "100MB", 100_000_000.0),
        ("rss_bytes", "1.5GiB", 1.5 * 1024**3),
        ("rss_bytes", 2_000_000, 2_000_000.0),
        ("search_latency_p95_seconds", "2s", 2.0),
        ("search_latency_p95_seconds", "250ms", 0.25),
        ("index_staleness_seconds", "2h", 7200.0),
        ("memory_percent", "80%", 80.0),
        ("cpu_percent", 90, 90.0),
        ("error_rate", "5%", 0.05),
        ("error_rate", "0.05", 0.05),
        ("job_failures", "0", 0.0),
    ],
)
def test_alert_thresholds_take_the_unit_of_their_metric(
    metric: str, written: object, compared: float
) -> None:
    rule = {"name": "r", "metric": metric, "threshold": written}
    config = parse_config(yaml.safe_dump({"alerts": {"rules": [rule]}}))
    assert config.alerts.rules[0].threshold == pytest.approx(compared)


@pytest.mark.parametrize(
    ("metric", "written", "expected"),
    [
        ("rss_bytes", "lots", "rss_bytes takes a size like '512MB'"),
        ("rss_bytes", "2s", "rss_bytes takes a size"),
        ("search_latency_p95_seconds", "100MB", "takes a duration like '2s'"),
        ("cpu_percent", "2s", "cpu_percent takes a percentage like 80 or '80%'"),
        ("job_failures", "3MB", "job_failures takes a number, got '3MB'"),
        ("rss_bytes", True, "not a boolean"),
    ],
)
def test_an_alert_threshold_in_the_wrong_unit_is_a_located_error(
    metric: str, written: object, expected: str
) -> None:
    rule = {"name": "r", "metric": metric, "threshold": written}
    text = yaml.safe_dump({"alerts": {"rules": [rule]}}, sort_keys=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "alerts.yaml")
    assert "alerts.rules[0].threshold (line" in str(caught.value)
    assert expected in str(caught.value)


# ------------------------------------------------------- hostile files (issue #9)


def billion_laughs(levels: int = 9) -> str:
    """The issue's 902-byte file: nine levels of nine aliases, 387 million values."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "search:\n  weights:\n" + "".join(f"    {line}\n" for line in lines)


def test_an_alias_bomb_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"line \d+: YAML aliases expand the document past"):
        parse_config(billion_laughs())


def test_an_alias_that_refers_to_itself_is_refused() -> None:
    with pytest.raises(ConfigError, match="refers to itself"):
        parse_config("search: &a {weights: *a}\n")


def test_a_few_aliases_still_work() -> None:
    text = (
        "alerts:\n  rules:\n"
        "    - &rule {name: a, metric: rss_bytes, op: '>', threshold: 1GB, for: 1m}\n"
        "    - {<<: *rule, name: b}\n"
    )
    assert [rule.name for rule in parse_config(text).alerts.rules] == ["a", "b"]


def test_check_config_on_the_alias_bomb_is_fast_and_small(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs(), encoding="utf-8")
    # 1 GiB of address space is generous for the interpreter and far below what
    # expanding the aliases takes (past 9 GB); 30 s is generous for a refusal that is
    # instant (it ran past 30 s at 1.5 GB before the bound).
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))"
    result = subprocess.run(
        [sys.executable, "-c",
         f"{limit}; import sys; from jarvisd.__main__ import main; "
         f"sys.exit(main(['--check-config', {str(bomb)!r}]))"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == EX_CONFIG, result.stderr
    assert "YAML aliases expand the document past" in result.stderr


def test_a_config_past_the_size_bound_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="byte limit"):
        load_config(big)


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "jarvis.yaml"
    os.mkfifo(fifo)
    # Opened without blocking and refused: nobody ever writes into this FIFO.
    with pytest.raises(ConfigError, match="a FIFO: the config must be a regular file"):
        load_config(fifo)
    with pytest.raises(ConfigError, match="a directory"):
        load_config(tmp_path)


def test_a_log_file_that_is_a_directory_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"logging.file \(line 3\): .* is a directory"):
        parse_config(f"logging:\n  level: info\n  file: {tmp_path}\n")


def test_a_log_file_in_a_folder_that_is_a_file_is_a_located_error(tmp_path: Path) -> None:
    blocker = tmp_path / "plain"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"logging.file \(line 2\): .* is not a directory"):
        parse_config(f"logging:\n  file: {blocker / 'sub' / 'jarvis.log'}\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_log_file_in_a_read_only_folder_is_a_located_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigError, match=r"logging.file \(line 2\): cannot create"):
            parse_config(f"logging:\n  file: {folder / 'jarvis.log'}\n")
    finally:
        folder.chmod(0o700)


def test_a_log_file_in_a_missing_folder_is_fine(tmp_path: Path) -> None:
    config = parse_config(f"logging:\n  file: {tmp_path / 'new' / 'jarvis.log'}\n")
    assert config.logging.file == tmp_path / "new" / "jarvis.log"

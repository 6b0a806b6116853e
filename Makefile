# llmdock — every install step lives here, so a fresh clone on a fresh machine needs nothing else.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
NPROC := $(shell nproc)
PYTEST_ARGS ?=

.PHONY: install system-deps serve test test-fast lint bench clean

$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; asking for it first keeps pip from pulling a
	# multi-GB CUDA build when sentence-transformers asks for torch.
	$(PY) -m pip install -q torch==2.13.0
	# llama-cpp-python compiles from source the first time (about 7 minutes on 2 cores); pip caches the wheel.
	CMAKE_BUILD_PARALLEL_LEVEL=$(NPROC) $(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# llmdock finetune's GGUF converter: from the sdist of the installed llama-cpp-python (once, docs/finetune.md)
	$(VENV)/bin/llmdock finetune converter
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

serve: install
	$(VENV)/bin/llmdock serve

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports          # dependencies point one way (contracts in pyproject.toml)
	$(PY) scripts/clones.py src       # no copied code, renamed copies included
	$(PY) scripts/structure.py src    # no module over 400 lines, no function over 80

# Two pytest-xdist workers: the tests that start servers or databases, load a real model or open a browser run on
# one of them, one at a time (tests/conftest.py groups them); the rest run on the other beside them.
XDIST = -n 2 --dist loadgroup

test: install system-deps lint
	LLMDOCK_REQUIRE_SERVICES=1 bash scripts/pytest.sh $(XDIST) --durations=30 $(PYTEST_ARGS)

# The fast tier: no real model, no database server, no server process, no browser.
test-fast: install
	bash scripts/pytest.sh $(XDIST) -m "not model and not postgres and not redis and not server and not browser" $(PYTEST_ARGS)

bench: install
	bash scripts/system-deps.sh bench
	$(PY) bench/serve_tokens.py
	bash bench/gateway_overhead.sh
	$(PY) bench/gateway_instructions.py
	$(PY) bench/trace_writer.py
	$(PY) bench/cache_latency.py
	$(PY) bench/auth_overhead.py
	$(PY) bench/pii_redaction.py
	$(PY) bench/structured_output.py
	$(PY) bench/grammar_speed.py
	$(PY) bench/guard_quality.py
	$(PY) bench/metric_speed.py
	$(PY) bench/eval_speed.py
	$(PY) bench/promptfoo_compare.py
	$(PY) bench/fuzz_api.py
	$(PY) bench/workers.py
	$(PY) bench/defaults_cost.py
	$(PY) bench/metrics_overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

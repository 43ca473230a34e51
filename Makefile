# Two entry points for a fresh machine: `make demo` (the main job on its CPU defaults) and
# `make test`. Both create .venv and install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.penspin-installed

.PHONY: install gl demo train test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned so CPU machines take the CPU wheel instead of a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,gpu]"
	touch $(STAMP)

install: $(STAMP) gl

# Headless rendering needs an EGL or OSMesa library; install one from Debian if it is missing.
gl:
	@if ! ldconfig -p | grep -q -E 'libEGL\.so|libOSMesa\.so'; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri libosmesa6; \
	  else echo "warning: no EGL/OSMesa library found; install libegl1 or libosmesa6 to render"; fi; \
	fi

demo: install
	$(BIN)/penspin render --checkpoint checkpoints/oracle.pt --out out/oracle.mp4
	$(BIN)/penspin eval --checkpoint checkpoints/oracle.pt --episodes 32 --out out/oracle_eval.json

train: install
	$(BIN)/penspin train-oracle

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

test: install lint
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/bench_sim.py

clean:
	rm -rf $(VENV) out

# vecstore: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch (a wheel on this machine's disk; elsewhere PyPI's). Override with
# TORCH_SPEC="torch" on a machine with a GPU to let pip pick the CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup browser demo test test-all lint typecheck bench bench-setup bench-quick clean

setup: $(VENV)/.installed

# Where the venv's own pip bootstrap (ensurepip) fails, as it once did on a CI machine, the
# venv is made without pip and the host's pip installs pip into it.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "ensurepip failed: bootstrapping pip with the host's pip"; \
	  rm -rf $(VENV) && $(PYTHON) -m venv --without-pip $(VENV) && \
	  $(PYTHON) -m pip --python $(PY) install -q pip; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m vecstore._native  # compiles the Numba kernels into their on-disk cache, once
	touch $@

# The search page's test drives Debian's chromium (tests/server/test_search_page.py). Installed
# here when it is missing and apt-get is there (as root); otherwise that test skips, saying why.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium (apt-get) for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	    || echo "warning: could not install chromium: the browser test will skip"; \
	fi

demo: setup
	$(VENV)/bin/vecstore demo

test: setup browser
	$(PY) -m pytest -q

test-all: setup browser
	$(PY) -m pytest -q -m "not gpu"

lint: setup
	$(VENV)/bin/ruff check vecstore native tests bench

typecheck: setup
	$(VENV)/bin/mypy vecstore

bench-setup: setup
	$(PY) -m pip install -q -e ".[bench]"

# The side-by-side report (python -m bench --list shows every scenario; bench/README.md says more).
# The full run reads the 200,000 cached PyPI vectors: `bench data` embeds them first if they are absent.
bench: bench-setup
	$(PY) -m bench data
	$(PY) -m bench side-by-side

bench-quick: bench-setup
	$(PY) -m bench side-by-side --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache demo_store

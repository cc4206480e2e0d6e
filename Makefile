# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pip (not uv/poetry): torch 2.14.1 / torchvision 0.29.1 come from this machine's wheel store.
PIP := $(BIN)/pip --disable-pip-version-check

.PHONY: demo test install install-dev lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/seewhy demo --out seewhy-demo

# Debian's chromium for the report's headless-browser test, installed when missing: as root, or
# with passwordless sudo; otherwise (or without apt) that one test skips and says why.
test: $(VENV)/.installed-dev
	@command -v chromium >/dev/null 2>&1 || { \
		echo "make test: installing chromium (apt) for the report's browser test"; \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			sudo -n apt-get update -qq && \
			sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		fi; \
	} || echo "make test: chromium not installed (needs root or passwordless sudo, and apt);" \
		"tests/render/test_report_browser.py will skip"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadscope -q

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/cam.py

clean:
	rm -rf $(VENV) seewhy-demo .pytest_cache .mypy_cache .ruff_cache

# Two entry points for a fresh machine (see README):
#   make run   installs everything and starts the database server and the dashboard
#   make test  installs everything and runs every test
# Both are idempotent: the venv is rebuilt only when a requirements file changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8501
export FACESEARCH_HOME ?= $(CURDIR)/data
# DeepFace and Keras keep weights under the project's data folder, never in $HOME.
export DEEPFACE_HOME ?= $(FACESEARCH_HOME)/models
export KERAS_HOME ?= $(FACESEARCH_HOME)/models/keras
export TF_CPP_MIN_LOG_LEVEL ?= 2
export ANONYMIZED_TELEMETRY := False

.PHONY: install run test browser clean bench screenshots

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Debian's Chromium (Playwright's own browser download does not work offline) and ffmpeg.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "chromium missing: run 'sudo apt-get install chromium' for the browser tests"; fi; }

run: install
	$(PY) -m facesearch serve --port $(PORT)

test: install browser
	$(PY) -m pytest -q tests

# The README's screenshots (docs/screenshots/), from the browser tests.
screenshots: install browser
	FACESEARCH_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_browser.py

bench: install
	$(PY) -m bench.bench_detectors
	$(PY) -m bench.bench_ingest --photos 240 --workers 2
	$(PY) -m bench.bench_perplexity

clean:
	rm -rf $(VENV) .pytest_cache

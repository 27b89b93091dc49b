# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install the
# pinned lock (requirements-dev.lock) with a pinned uv, then the package itself in editable mode.
# Bytecode is compiled at install: uv does not, and where PYTHONDONTWRITEBYTECODE is set (as on CI machines)
# Python never caches it either, so every process (each CT component, the monitor, the gateway) compiled
# pandas, scikit-learn and Evidently from source at every start: 8.6 s instead of 4.2 s to import Evidently.
PYTHON ?= python3.11
VENV := .venv
UV_VERSION := 0.13.8
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast lint compile lock bench notebooks screenshots image clean

setup: $(STAMP)

$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q src components pipelines
	touch $@

# TASK picks the generated table: binary (churn, the default), multiclass (retention offer), regression (spend).
TASK ?= binary
demo: setup
	$(BIN)/driftloop demo --task $(TASK)

# Three workers on two cores: most integration tests wait on servers and subprocesses. Each worker takes
# whole files, so a module's shared fixtures (a cluster, a Prometheus, a trained registry) are built once.
test: setup
	$(BIN)/python -m pytest -n 3 --dist loadfile

# The inner loop: unit tests only, one process (about half a minute).
test-fast: setup
	$(BIN)/python -m pytest tests/unit -q

lint: setup
	$(BIN)/ruff check src components pipelines tests bench tools

compile: setup
	$(BIN)/driftloop compile

# Regenerate the locks after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 --extra dev pyproject.toml -o requirements-dev.lock

bench: setup
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_ct_run.py
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_fastpath.py
	$(BIN)/python bench/bench_drift.py
	$(BIN)/python bench/bench_monitor.py
	$(BIN)/python bench/bench_monitor_ingest.py
	$(BIN)/python bench/bench_batch_scoring.py
	$(BIN)/python bench/bench_models.py
	$(BIN)/python bench/bench_drift_retrain.py

# The notebooks executed from temporary copies (01 with its closed loop, then 03 on what that left), written
# with their outputs to docs/notebooks/ as .ipynb and HTML; the tracked notebooks are only read. 02 needs a
# Kubeflow Pipelines API and is left out. A few minutes.
notebooks: setup
	$(BIN)/python tools/render_notebooks.py

# PNGs of the evaluation page, the model card and the drift monitor's page from a small demo run, in
# docs/images/, by headless Chromium (Debian: apt-get install -y --no-install-recommends chromium). A few minutes.
screenshots: setup
	$(BIN)/python tools/screenshots.py

# Needs a Docker engine (not on the development machine). IMAGE names it (default: the project image of
# this package version); the image bakes the name in as DRIFTLOOP_IMAGE. Push it, then pin it by digest.
IMAGE ?= $(shell $(BIN)/python -c "from driftloop.image import PROJECT_IMAGE; print(PROJECT_IMAGE)" 2>/dev/null)
image: setup
	docker build --build-arg GIT_COMMIT=$$(git rev-parse HEAD) --build-arg IMAGE=$(IMAGE) -t $(IMAGE) .

clean:
	rm -rf $(VENV) .driftloop

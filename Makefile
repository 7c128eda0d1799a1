# The README's commands. `make test` / `make demo` build .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit lint bench ui-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Exact pins, installed first: anything looser pulls a multi-GB download instead of the local wheels.
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	# The rest at the tested versions (constraints.txt; pyproject.toml only gives ranges).
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/drsta demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The unit tier: no real Ray / MLflow / decord processes (tests marked `integration` are left out).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

# After `make demo`: the MLflow UI on the demo's store in headless Chromium (apt-get install -y chromium), its pages
# checked for the metrics, figures and champion alias, a screenshot of each in ui-check/.
ui-check: $(STAMP)
	$(BIN)/python -m tests.mlflow_ui --store demo-output/mlflow.db --out ui-check

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/metrics.py
	$(BIN)/python benchmarks/model.py
	$(BIN)/python benchmarks/synthetic_baselines.py
	$(BIN)/python benchmarks/data.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/tune.py
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

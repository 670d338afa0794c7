# The two set-up commands of the README: `make demo` (main job) and `make test` (the suite).
# Both create .venv and install the core and every plugin under plugins/ (pip, editable).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
ROBUST := $(VENV)/bin/robust
PLUGINS := $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml)
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all bench bench-quick clean

$(STAMP): pyproject.toml $(PLUGINS)
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the pinned CPU build: a looser pin pulls gigabytes of CUDA packages
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]' $(foreach p,$(dir $(PLUGINS)),-e '$(p)[test]')
	touch $@

install: $(STAMP)

# The main job: the paper's selection on calo-energy in a quick profile (examples/studies/demo.toml:
# 8 sampled candidates, samples of 2,000, 20-40 epochs), the baselines it cuts against, Model 2
# assessed on the same samples, and the report. Minutes on 2 cores; the first run also generates
# the calorimeter data. examples/studies/paper-energy.toml is the paper's full study.
DEMO := -c examples/studies/demo.toml

demo: install
	$(ROBUST) tasks
	$(ROBUST) baseline $(DEMO) --instances 5
	$(ROBUST) select $(DEMO)
	$(ROBUST) assess $(DEMO) --candidate model2 --instances 5
	$(ROBUST) report --study calo-energy-demo --out mlruns/calo-energy-demo.html
	@echo "browse every run: $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"

test: install
	$(VENV)/bin/pytest -q -m "not slow and not gpu"

test-all: install
	$(VENV)/bin/pytest -q

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-quick: install
	for b in benchmarks/*.py; do echo "== $$b --quick"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) mlruns

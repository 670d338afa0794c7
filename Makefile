# The two set-up commands of the README: `make demo` (main job) and `make test` (the suite).
# Both create .venv and install the core and every plugin under plugins/ (pip, editable).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
ROBUST := $(VENV)/bin/robust
PLUGINS := $(wildcard plugins/*/pyproject.toml) $(wildcard examples/*/pyproject.toml)
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all bench clean

$(STAMP): pyproject.toml $(PLUGINS)
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the pinned CPU build: a looser pin pulls gigabytes of CUDA packages
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]' $(foreach p,$(dir $(PLUGINS)),-e '$(p)[test]')
	touch $@

install: $(STAMP)

# The main job, shortened to minutes on 2 cores: the paper's selection (baseline cut + halving by
# the mean loss) over 8 candidates drawn from the 6,912 of calo-energy, then the paper's Model 2
# assessed over 5 instances, and a figure. The paper's early stopping (100/30/10%) is the default
# of every command; the demo caps epochs to keep its run short.
DEMO_TRAINING := --train-size 2000 --min-epochs 20 --window 10 --max-epochs 40

demo: install
	$(ROBUST) tasks
	$(ROBUST) baseline --task calo-energy --instances 5 --train-size 2000
	$(ROBUST) select --task calo-energy --sample 8 --rule paper --criterion mean --final-instances 5 $(DEMO_TRAINING)
	$(ROBUST) assess --task calo-energy --candidate model2 --instances 5 $(DEMO_TRAINING)
	$(ROBUST) report --study calo-energy --out mlruns/calo-energy.png

test: install
	$(VENV)/bin/pytest -q -m "not slow and not gpu"

test-all: install
	$(VENV)/bin/pytest -q

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) mlruns

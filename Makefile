# make run   : create .venv, install, run the quickstart study on local Ray
# make test  : create .venv, install, run the test suite
# make bench : create .venv, install, run the benchmarks (JSON on stdout)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED_CIFAR := ../shared/data/cifar10-jpg.tar.gz
# CIFAR-10 from the data root (torchvision download when missing), or the
# checkout's shared copy when there is one; override: make run DATA=folder:PATH
DATA ?= $(if $(wildcard $(SHARED_CIFAR)),folder:$(SHARED_CIFAR),cifar10)
RUN_ARGS ?=

.PHONY: run test bench clean venv
venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: venv
	$(BIN)/raylab run jobs/quickstart.py --data $(DATA) $(RUN_ARGS)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/trainer.py
	$(BIN)/python bench/sweep.py

clean:
	rm -rf results/quickstart .pytest_cache

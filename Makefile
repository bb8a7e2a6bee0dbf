# make run   : create .venv, install, run the quickstart study on local Ray
# make test  : create .venv, install, install the Debian packages the tests need when it can
#              (scripts/system_deps.sh; SYSTEM_DEPS=no skips that), run every test
# make test-fast : the fast tier only (no Ray, no long processes; docs/tests.md)
# make bench : create .venv, install, run the benchmarks (JSON on stdout)
# make gpu-data  : copy the shared CIFAR-10 copy into .gpu-data/ (ignored), so it travels to a GPU machine
# make gpu-check : the GPU acceptance script, with the python already there (no venv: that machine has no pip)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED_CIFAR := ../shared/data/cifar10-jpg.tar.gz
# CIFAR-10 from the data root (torchvision download when missing), or the
# checkout's shared copy when there is one; override: make run DATA=folder:PATH
DATA ?= $(if $(wildcard $(SHARED_CIFAR)),folder:$(SHARED_CIFAR),cifar10)
RUN_ARGS ?=
SYSTEM_DEPS ?= yes
# The fast tier: every test without a tier marker (pyproject.toml lists them).
FAST_TIER := not ray and not slow and not launcher and not browser and not gpu

GPU_DATA := .gpu-data/cifar10-jpg.tar.gz
CIFAR_COPY ?= $(SHARED_CIFAR)
GPU_CHECK_ARGS ?=

.PHONY: run test test-fast system-deps bench clean venv gpu-data gpu-check
venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: venv
	$(BIN)/raylab run jobs/quickstart.py --data $(DATA) $(RUN_ARGS)

test: venv system-deps
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "$(FAST_TIER)"

system-deps:
ifneq ($(SYSTEM_DEPS),no)
	scripts/system_deps.sh
endif

bench: venv
	$(BIN)/python bench/trainer.py
	$(BIN)/python bench/sweep.py

gpu-data: $(GPU_DATA)

$(GPU_DATA):
	@test -f $(CIFAR_COPY) || { echo "make gpu-data: no CIFAR-10 copy at $(CIFAR_COPY): pass CIFAR_COPY=PATH/cifar10-jpg.tar.gz" >&2; exit 2; }
	mkdir -p $(dir $@)
	cp $(CIFAR_COPY) $@

gpu-check:
	$(PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf results/quickstart .pytest_cache

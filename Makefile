# chimera: the two commands are `make serve` and `make test`; each sets everything up itself.
PY      ?= python3
VENV    := .venv
BACKEND ?= cpu
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-$(BACKEND)
ARGS    ?=

.PHONY: setup serve test test-unit models bench binary lint clean

$(STAMP): pyproject.toml native/versions.env native/cmake-args.sh native/build-wheels.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHON=$(BIN)/python native/build-wheels.sh $(BACKEND) > $(VENV)/native-wheels.txt
	$(BIN)/python -m pip install -q $$(cat $(VENV)/native-wheels.txt) -e '.[test]'
	rm -f $(VENV)/.setup-*
	touch $@

setup: $(STAMP)

models: setup
	$(BIN)/chimera models prepare --which all

serve: setup
	$(BIN)/chimera serve $(ARGS)

test: setup models
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: setup models
	$(BIN)/python tests/bench/run.py --write docs/benchmarks.md $(BENCH_ARGS)
	$(BIN)/python tests/bench/persist.py

binary: setup
	$(BIN)/python -m pip install -q 'pyinstaller>=6.10'
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN chimera.spec

lint: setup
	$(BIN)/python -m compileall -q app tests

clean:
	rm -rf $(VENV) build dist

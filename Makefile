# chimera: the two commands are `make serve` and `make test`; each sets everything up itself.
PY      ?= python3
VENV    := .venv
BACKEND ?= cpu
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.setup-$(BACKEND)
ARGS    ?=

.PHONY: setup serve test test-unit models browser ui-shots bench bench-gpu compat binary binary-onefile test-binary release lint clean

$(STAMP): pyproject.toml native/versions.env native/cmake-args.sh native/patches.sh native/build-wheels.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHON=$(BIN)/python native/build-wheels.sh $(BACKEND) > $(VENV)/native-wheels.txt
	# a rebuilt engine keeps its version number: replace what is installed
	$(BIN)/python -m pip install -q --force-reinstall --no-deps $$(cat $(VENV)/native-wheels.txt)
	$(BIN)/python -m pip install -q $$(cat $(VENV)/native-wheels.txt) -e '.[test]'
	rm -f $(VENV)/.setup-*
	touch $@

setup: $(STAMP)

models: setup
	$(BIN)/chimera models prepare --which all
	$(BIN)/chimera models prepare --which gemma

# the default chat model, plus speech-to-text (whisper tiny.en) and vector stores (MiniLM) on
# the prepared defaults; ARGS come last, so they can override any of these
serve: setup models
	$(BIN)/chimera serve --whisper-model "$$($(BIN)/chimera models prepare --which whisper)" \
	  --rag-model "$$($(BIN)/chimera models prepare --which embed)" $(ARGS)

# Debian's chromium and its driver, for the web UI's browser tests (installed when apt-get can run;
# without them those tests are skipped with the reason)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) ; } || \
	  echo "no chromium: the web UI's browser tests will be skipped"

test: setup models browser
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

# the screenshots in docs/ui.md, taken by the browser tests
ui-shots: setup models browser
	CHIMERA_UI_SHOTS=docs/ui $(BIN)/python -m pytest tests/e2e/test_webui.py $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: setup models
	$(BIN)/python tests/bench/run.py --write docs/benchmarks.md $(BENCH_ARGS)
	$(BIN)/python tests/bench/models.py --write docs/benchmarks.md
	$(BIN)/python tests/bench/defaults.py --write docs/benchmarks.md
	$(BIN)/python tests/bench/speculative.py --write docs/benchmarks.md
	$(BIN)/python tests/bench/rpc.py --write docs/benchmarks.md
	$(BIN)/python tests/bench/shared_cpu.py --write docs/benchmarks.md
	$(BIN)/python tests/bench/persist.py

# llama.cpp's own server tests (tools/server/tests of the vendored llama.cpp) against llama-server and
# against chimera, with local stand-ins for the hub models: docs/compat.md (tests/compat/run.py).
# COMPAT_ARGS: e.g. unit/test_tokenize.py, -k EXPR, --target chimera
compat: setup models
	$(BIN)/python tests/compat/run.py --write docs/compat.md $(COMPAT_ARGS)

# the GPU comparison (a CUDA toolkit and an NVIDIA GPU): CUDA wheels, a random Llama-3.2-1B-shaped
# f16 model, llama-server and llama-batched-bench built with CUDA, 1 / 8 / 32 streaming clients
RANDOM_1B := $(HOME)/.cache/chimera/bench/random-llama-3.2-1b-f16.gguf
bench-gpu:
	$(MAKE) setup BACKEND=cuda
	test -f $(RANDOM_1B) || (mkdir -p $(dir $(RANDOM_1B)) && $(BIN)/python tests/bench/random_model.py $(RANDOM_1B))
	$(BIN)/python tests/bench/run.py --backend cuda --batched-bench --model $(RANDOM_1B) --parallel 32 \
	  --ctx 32768 --concurrency 1 8 32 --write docs/benchmarks.md $(BENCH_ARGS)

# dist/chimera: one file (packaging/README.md). BACKEND=cuda|vulkan builds from those wheels.
PYINSTALLER := pyinstaller==6.22.3 pyinstaller-hooks-contrib==2026.9
binary: setup
	$(BIN)/python -m pip install -q $(PYINSTALLER)
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) PYTHONHASHSEED=0 \
	  $(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath build/onedir --workpath build/pyinstaller chimera.spec
	$(BIN)/python packaging/pack.py build/onedir/chimera dist/chimera --backend $(BACKEND)

# PyInstaller's own one-file mode (unpacks on every run): build/onefile/chimera, for comparison
binary-onefile: setup
	$(BIN)/python -m pip install -q $(PYINSTALLER)
	CHIMERA_PYI_ONEFILE=1 SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) PYTHONHASHSEED=0 \
	  $(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath build/onefile --workpath build/pyinstaller-onefile chimera.spec

# the frozen smoke test against dist/chimera, with the library audit (packaging/audit.py)
test-binary: binary models
	CHIMERA_TEST_BINARY=1 CHIMERA_BACKEND=$(BACKEND) $(BIN)/python -m pytest tests/frozen $(PYTEST_ARGS)

# dist/chimera-<version>-<platform>[-<backend>].tar.gz with licenses, README and SHA256SUMS
release: binary
	$(BIN)/python packaging/release.py --backend $(BACKEND)

# ruff (style, imports, likely bugs) and mypy (strict on the serving core and the protocol
# models), both pinned in pyproject.toml's lint extra
lint: setup
	$(BIN)/python -m pip install -q -e '.[lint]'
	$(BIN)/python -m ruff check app tests
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) build dist

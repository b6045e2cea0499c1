#!/usr/bin/env bash
# Builds (or reuses) llama-server from the llama.cpp that the pinned llama-cpp-python vendors, with
# the same CMake flags as the wheel, for `make bench` (the anchor chimera is measured against).
# usage: native/build-llama-server.sh [BACKEND [TOOL]]   → prints the path of the binary
#   TOOL: llama-server (default), ggml-rpc-server (llama.cpp's RPC helper, built with llama-server) or
#         llama-batched-bench (the engine's own limit, for GPU benchmarks)
set -euo pipefail
BACKEND=${1:-cpu}
TOOL=${2:-llama-server}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
. "$HERE/versions.env"
. "$HERE/cmake-args.sh"
. "$HERE/patches.sh"
CACHE=${CHIMERA_CACHE:-$HOME/.cache/chimera}
ARGS="$(llama_cmake_args "$BACKEND") -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_WEBUI=OFF -DLLAMA_OPENSSL=OFF"
KEY="llama-server-$LLAMA_CPP_PYTHON_VERSION-$BACKEND-$(printf '%s\n' "$ARGS" "$LLAMA_PATCH_REV" | sha256sum | cut -c1-12)"
OUT="$CACHE/tools/$KEY"
if [ -x "$OUT/bin/$TOOL" ]; then echo "$OUT/bin/$TOOL"; exit 0; fi
echo "building llama-server for $BACKEND (cache miss: $KEY); this takes minutes" >&2
SDIST=$(ls "$CACHE/sdist/"llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION".tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
  mkdir -p "$CACHE/sdist"
  "$PY" -m pip download -q --no-deps --no-binary :all: -d "$CACHE/sdist" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  SDIST="$CACHE/sdist/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
fi
WORK=$(mktemp -d)
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
patch_llama_cpp "$SRC"
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON $ARGS >&2
# shellcheck disable=SC2046
cmake --build "$WORK/build" --target llama-server ggml-rpc-server $([ "$TOOL" != llama-server ] && [ "$TOOL" != ggml-rpc-server ] && echo "$TOOL") -j "$(nproc)" >&2
rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
cp -a "$WORK/build/bin" "$OUT.tmp/bin"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"; rm -rf "$WORK"
echo "$OUT/bin/$TOOL"

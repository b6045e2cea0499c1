#!/usr/bin/env bash
# Builds (or reuses) the native engine wheels for one backend and prints their paths, one a line.
# usage: native/build-wheels.sh [BACKEND]      BACKEND: cpu (default) | cuda | vulkan | metal
# Cache: ${CHIMERA_CACHE:-~/.cache/chimera}/wheels/<key>/ where key = package-version-backend-hash
# of (CMAKE_ARGS + this recipe). A cache miss downloads the sdist from PyPI and builds it.
set -euo pipefail
BACKEND=${1:-cpu}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
. "$HERE/versions.env"
. "$HERE/cmake-args.sh"
. "$HERE/patches.sh"
CACHE=${CHIMERA_CACHE:-$HOME/.cache/chimera}
mkdir -p "$CACHE/sdist" "$CACHE/wheels"

# Bump RECIPE_REV whenever a change here changes what a build produces (a patch, a build step).
RECIPE_REV=1
PYTAG=$("$PY" -c 'import sys; print(sys.implementation.cache_tag)')
recipe_hash() { # recipe_hash ARGS...: hash of the CMake flags, the recipe revision and the Python
  printf '%s\n' "$@" "$RECIPE_REV" "$PYTAG" | sha256sum | cut -c1-12
}

fetch_sdist() { # fetch_sdist NAME VERSION -> path of the sdist
  local name=$1 ver=$2 f
  f=$(ls "$CACHE/sdist/"*"${ver}.tar.gz" 2>/dev/null | grep -i "$(echo "$name" | tr - _)" | head -1 || true)
  if [ -z "$f" ]; then
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$CACHE/sdist" "$name==$ver" >&2
    f=$(ls "$CACHE/sdist/"*"${ver}.tar.gz" | grep -i "$(echo "$name" | tr - _)" | head -1)
  fi
  echo "$f"
}

build_one() { # build_one NAME VERSION CMAKE_ARGS PATCH_FUNC [PATCH_REV]
  local name=$1 ver=$2 args=$3 patch=$4 key dir src work
  key="$name-$ver-$BACKEND-$(recipe_hash "$args" ${5:+"patches-$5"})"
  dir="$CACHE/wheels/$key"
  if ls "$dir"/*.whl >/dev/null 2>&1; then ls "$dir"/*.whl; return; fi
  echo "building $name $ver for $BACKEND (cache miss: $key); this takes minutes" >&2
  src=$(fetch_sdist "$name" "$ver")
  work=$(mktemp -d)
  tar -xzf "$src" -C "$work"
  local tree; tree=$(ls -d "$work"/*/ | head -1)
  $patch "$tree"
  mkdir -p "$dir.tmp"
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$PY" -m pip wheel -q --no-deps -w "$dir.tmp" "$tree" >&2
  rm -rf "$dir"; mv "$dir.tmp" "$dir"; rm -rf "$work"
  ls "$dir"/*.whl
}

patch_llama() { # the llama.cpp source patches, and every CPU-variant backend library installed beside
  local tree=$1 # libggml, where we load them from
  patch_llama_cpp "$tree/vendor/llama.cpp"
  grep -q CHIMERA_CPU_VARIANTS "$tree/CMakeLists.txt" && return
  sed -i 's|^    llama_cpp_python_install_target(ggml-cpu)$|&\
    # CHIMERA_CPU_VARIANTS: dynamic CPU backends (GGML_CPU_ALL_VARIANTS)\
    foreach(v x64 sse42 sandybridge ivybridge piledriver haswell skylakex cannonlake cascadelake icelake cooperlake zen4 alderlake sapphirerapids)\
        llama_cpp_python_install_target(ggml-cpu-${v})\
    endforeach()|' "$tree/CMakeLists.txt"
  grep -q CHIMERA_CPU_VARIANTS "$tree/CMakeLists.txt" || { echo "patch of llama-cpp-python CMakeLists failed" >&2; exit 1; }
}
no_patch() { :; }

build_one llama-cpp-python "$LLAMA_CPP_PYTHON_VERSION" "$(llama_cmake_args "$BACKEND")" patch_llama "$LLAMA_PATCH_REV"
build_one stable-diffusion-cpp-python "$SD_CPP_PYTHON_VERSION" "$(sd_cmake_args "$BACKEND")" no_patch

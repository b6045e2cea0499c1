# Source patches applied to the vendored llama.cpp before every build of it (the wheel and the
# llama-server anchor alike). Bump LLAMA_PATCH_REV whenever a patch here changes.
# usage: . native/patches.sh; patch_llama_cpp LLAMA_CPP_SOURCE_DIR
LLAMA_PATCH_REV=1

patch_llama_cpp() {
  local src=$1 mmq
  # AMX (sapphirerapids variant): GCC 12 drops the stores that fill the tile configuration on the
  # stack before `_tile_loadconfig`, which then loads palette 1 with every tile 0x0 and the first
  # tile instruction raises SIGILL (the server dies on its first prompt on a CPU with AMX). An
  # empty asm that takes the configuration's address and clobbers memory keeps the stores.
  mmq="$src/ggml/src/ggml-cpu/amx/mmq.cpp"
  if [ -f "$mmq" ] && ! grep -q CHIMERA_AMX_CONFIG "$mmq"; then
    sed -i 's|^    _tile_loadconfig(&tc);$|    __asm__ __volatile__("" : : "r"(\&tc) : "memory");  // CHIMERA_AMX_CONFIG\
&|' "$mmq"
    grep -q CHIMERA_AMX_CONFIG "$mmq" || { echo "patch of ggml-cpu/amx/mmq.cpp failed" >&2; return 1; }
  fi
}

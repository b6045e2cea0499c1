# CMAKE_ARGS for each backend, shared by the wheel builds and the llama-server anchor build.
# usage: . native/cmake-args.sh; llama_cmake_args BACKEND; sd_cmake_args BACKEND
# cpu:    no -march=native. llama.cpp builds every x86-64 CPU variant of its CPU backend as a
#         loadable library (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) and picks the best one at run
#         time, so one wheel runs on a plain x86-64 CPU and uses AVX-512 where it exists.
# cuda:   the CUDA backend is one more loadable library beside the CPU variants.
# vulkan: likewise, with the Vulkan SDK (glslc) installed.
# metal:  macOS only; Metal is embedded, CPU variants are not needed on Apple silicon.
llama_cmake_args() {
  case "$1" in
    cpu)    echo "-DGGML_RPC=ON -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" ;;
    cuda)   echo "-DGGML_RPC=ON -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-75;80;86;89;90} -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" ;;
    vulkan) echo "-DGGML_RPC=ON -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_VULKAN=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" ;;
    metal)  echo "-DGGML_RPC=ON -DGGML_METAL=ON -DGGML_METAL_EMBED_LIBRARY=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" ;;
    *) echo "unknown backend: $1 (cpu|cuda|vulkan|metal)" >&2; return 2 ;;
  esac
}
# stable-diffusion.cpp vendors its own ggml and links it statically into one library, so it cannot
# load CPU variants at run time: the portable CPU build targets x86-64-v3 (AVX2/FMA/F16C, every
# x86-64 CPU since 2013-2015) and never -march=native.
sd_cmake_args() {
  case "$1" in
    cpu)    echo "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_BMI2=OFF" ;;
    cuda)   echo "-DGGML_NATIVE=OFF -DSD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-75;80;86;89;90}" ;;
    vulkan) echo "-DGGML_NATIVE=OFF -DSD_VULKAN=ON" ;;
    metal)  echo "-DSD_METAL=ON" ;;
    *) echo "unknown backend: $1" >&2; return 2 ;;
  esac
}

# llama-cpp-python: the libraries it loads at run time, and nothing else from llama_cpp/lib.
#
# - libllama.so        loaded by llama_cpp.llama_cpp through ctypes (by that exact file name);
#                      its soname is libllama.so.0, which libmtmd.so then finds already loaded
# - libggml.so.0, libggml-base.so.0   libllama's DT_NEEDED (chimera.llm.native loads libggml.so.0)
# - libmtmd.so         loaded by llama_cpp.mtmd_cpp (images/audio in chat)
# - libggml-<backend>*.so   every dynamically loaded ggml backend: the CPU variants of the portable
#                      CPU build, and libggml-cuda.so / libggml-vulkan.so in GPU builds; ggml scores
#                      them at run time and loads the best (chimera.llm.native.load)
# The wheel also holds full copies (not symlinks) of libllama.so.0, libllama.so.0.5.0,
# libggml.so, libggml.so.0.25.3, ... under their other names: those are never opened, so they are
# left out (about 12 MB).
import os

from PyInstaller.utils.hooks import get_package_paths

_, pkg_dir = get_package_paths("llama_cpp")
lib_dir = os.path.join(pkg_dir, "lib")

_ALWAYS = ("libllama.so", "libggml.so.0", "libggml-base.so.0", "libmtmd.so",  # Linux
           "libllama.dylib", "libggml.dylib", "libggml-base.dylib", "libmtmd.dylib",  # macOS
           "llama.dll", "ggml.dll", "ggml-base.dll", "mtmd.dll")  # Windows


def _wanted(name: str) -> bool:
    if name in _ALWAYS:
        return True
    # dynamically loaded backends: libggml-cpu-haswell.so, libggml-cuda.so, ggml-vulkan.dll, ...
    stem = name[3:] if name.startswith("lib") else name
    if not stem.startswith("ggml-") or stem.startswith("ggml-base"):
        return False
    return name.endswith((".so", ".dylib", ".dll"))


binaries = [(os.path.join(lib_dir, n), "llama_cpp/lib") for n in sorted(os.listdir(lib_dir)) if _wanted(n)]
hiddenimports = ["llama_cpp.llama_cpp", "llama_cpp.mtmd_cpp", "llama_cpp._ctypes_extensions"]

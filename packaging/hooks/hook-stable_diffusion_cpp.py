# stable-diffusion-cpp-python: libstable-diffusion (its own ggml linked in statically), loaded through
# ctypes from stable_diffusion_cpp/lib. GPU builds put their extra libraries in the same folder
# (e.g. ggml-cuda for CUDA on Windows); everything loadable there is collected.
import os

from PyInstaller.utils.hooks import get_package_paths

_, pkg_dir = get_package_paths("stable_diffusion_cpp")
lib_dir = os.path.join(pkg_dir, "lib")
binaries = [
    (os.path.join(lib_dir, n), "stable_diffusion_cpp/lib")
    for n in sorted(os.listdir(lib_dir))
    if n.endswith((".so", ".dylib", ".dll")) or ".so." in n
]
hiddenimports = ["stable_diffusion_cpp.stable_diffusion_cpp", "PIL.Image"]

# sqlite-vec: its loadable SQLite extension (vec0.so / vec0.dylib / vec0.dll) sits in the package and
# is opened by apsw via sqlite_vec.loadable_path().
from PyInstaller.utils.hooks import collect_dynamic_libs

binaries = collect_dynamic_libs("sqlite_vec", search_patterns=["vec0.so", "vec0.dylib", "vec0.dll"])

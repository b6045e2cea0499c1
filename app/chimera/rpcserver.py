"""`chimera rpc-server`: this machine's devices offered to other machines' `chimera serve --rpc`
(and llama-server's `--rpc`), through ggml's RPC server, with llama.cpp's rpc-server options.

The protocol has no authentication and no encryption: whoever reaches the port can run
computations and read what the server holds. It listens on 127.0.0.1 unless told otherwise, and
another address needs --allow-network as well (upstream only warns).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from pathlib import Path

WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: Host ('{host}') is != '127.0.0.1'
         Never expose the RPC server to an open network!
         This is an experimental feature and is not secure!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rpc-server", allow_abbrev=False,
                       help="offer this machine's CPU or GPUs to other machines' `serve --rpc` (llama.cpp's rpc-server)")
    p.add_argument("-H", "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; anything else needs --allow-network)")
    p.add_argument("-p", "--port", type=int, default=50052, help="port (default 50052)")
    p.add_argument("-t", "--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="threads of the CPU device (default: half the CPUs)")
    p.add_argument("-d", "--device", default=None, metavar="DEV1,DEV2,...",
                   help="devices to offer (default: every GPU, else the CPU); see `chimera serve --list-devices`")
    p.add_argument("-c", "--cache", action="store_true",
                   help="keep large tensors in a local file cache, so a client that loads the same model again sends only their hashes")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where --cache keeps them (default: $LLAMA_CACHE/rpc, else the chimera cache folder's rpc/)")
    p.add_argument("--allow-network", action="store_true",
                   help="listen on an address other than loopback: the protocol has no authentication, so only on a trusted network")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cache_dir(ns: argparse.Namespace) -> str | None:
    if not ns.cache:
        return None
    if ns.cache_dir:
        path = Path(ns.cache_dir)
    elif os.environ.get("LLAMA_CACHE"):
        path = Path(os.environ["LLAMA_CACHE"]) / "rpc"
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("chimera")) / "rpc"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def main(ns: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .llm.native import load
    from .llm.rpc import serve

    if not 0 < ns.port < 65536:
        raise ConfigError(f"--port: {ns.port} is not a port")
    if ns.threads < 1:
        raise ConfigError(f"--threads: {ns.threads}: at least 1")
    if not _loopback(ns.host):
        if not ns.allow_network:
            raise ConfigError(f"--host {ns.host}: the RPC protocol has no authentication; anyone who reaches this port "
                              "can use this machine's devices and read their memory. Add --allow-network to listen there "
                              "anyway (a trusted network only)")
        print(WARNING.format(host=ns.host), file=sys.stderr)
    devices = [d for d in (ns.device or "").replace("/", ",").split(",") if d.strip()]
    native = load()
    # the server runs in native code until the process ends: Ctrl-C and SIGTERM end it at once
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    where = cache_dir(ns)
    print(f"chimera rpc-server: listening on {ns.host}:{ns.port}, {ns.threads} threads"
          + (f", tensor cache in {where}" if where else ""), file=sys.stderr, flush=True)
    serve(native, ns.host, ns.port, ns.threads, devices, where)
    return 1  # the server returns only when it could not start (the reason is in the log above)

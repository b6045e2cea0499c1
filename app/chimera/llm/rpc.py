"""llama.cpp's RPC backend: the devices of other machines as ggml devices (`--rpc`), and the
server that offers this machine's devices to them (`chimera rpc-server`).

An RPC device takes model layers like a GPU does: llama.cpp puts the registered RPC devices first
in a model's device list and places `-ngl` layers on them in proportion to their memory (or by
`--tensor-split`). llama.cpp aborts the process when an endpoint it registers does not answer, so
every endpoint is greeted here first, in Python, with the protocol's HELLO: an unreachable or
incompatible server is an `RpcUnreachable` naming it, never an abort.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .native import Native, device_list

log = logging.getLogger("chimera.rpc")

HELLO = 14  # RPC_CMD_HELLO, fixed by the protocol
CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE: transport capabilities (none asked for here)
PROTO_MAJOR, PROTO_MINOR = 7, 0  # RPC_PROTO_*_VERSION of the vendored llama.cpp
DEFAULT_PORT = 50052


class RpcUnreachable(ConfigError):
    """An RPC endpoint that does not answer, or answers another protocol version."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"--rpc {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """HOST:PORT as llama.cpp reads it (the host is everything before the first colon)."""
    host, sep, port = text.strip().partition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--rpc: {text!r} is not HOST:PORT")
    return Endpoint(host, int(port))


def hello(ep: Endpoint, timeout: float = 5.0) -> tuple[int, int, int]:
    """Greet an RPC server; its protocol version (major, minor, patch). Raises RpcUnreachable."""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as s:
            s.sendall(struct.pack("<BQ", HELLO, CAPS_SIZE) + bytes(CAPS_SIZE))
            head = _recv_exact(s, 8)
            (size,) = struct.unpack("<Q", head)
            if size != 4 + CAPS_SIZE:
                raise RpcUnreachable(str(ep), f"not a ggml RPC server of this protocol (answered {size} bytes to HELLO)")
            major, minor, patch = struct.unpack("<BBBx", _recv_exact(s, 4))
            _recv_exact(s, CAPS_SIZE)
    except RpcUnreachable:
        raise
    except EOFError:
        raise RpcUnreachable(str(ep), "closed the connection during the handshake") from None
    except TimeoutError:
        raise RpcUnreachable(str(ep), f"did not answer within {timeout:g} s (an RPC server serves one client at a time: "
                                      "is another server using it?)") from None
    except OSError as e:
        raise RpcUnreachable(str(ep), f"unreachable ({e.strerror or e.__class__.__name__})") from None
    if major != PROTO_MAJOR or minor > PROTO_MINOR:
        raise RpcUnreachable(str(ep), f"RPC protocol {major}.{minor}.{patch}; this build speaks {PROTO_MAJOR}.{PROTO_MINOR}.x")
    return major, minor, patch


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _rpc_reg(native: Native) -> Any:
    reg = native.ggml.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise ConfigError("--rpc: this build of llama.cpp has no RPC backend (built without GGML_RPC)")
    return reg


class RpcDevices:
    """The RPC servers this process has registered with ggml, and which devices each brought.
    Built once per process (the CLI for --rpc, the model loader for a preset's `rpc` key); ggml's
    registry is process-wide, so a server is registered once and a model then picks its devices
    by endpoint. Thread-safe: models load in worker threads."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.devices: dict[str, list[str]] = {}  # endpoint → ggml device names (RPC0, RPC1, ...)

    def add(self, native: Native, endpoints: list[Endpoint]) -> None:
        """Greet each endpoint not registered yet, then register its devices (as llama-server's
        --rpc does). Blocking (network): never on the trio thread."""
        with self._lock:
            new = [ep for ep in endpoints if str(ep) not in self.devices]
            if not new:
                return
            reg = _rpc_reg(native)
            for ep in new:
                hello(ep)
            add = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(
                native.ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server"))
            for ep in new:
                server_reg = add(str(ep).encode())
                if not server_reg:
                    raise RpcUnreachable(str(ep), "offers no devices")
                native.ggml.ggml_backend_register(server_reg)
                self.devices[str(ep)] = [d["name"] for d in device_list(native, rpc_memory=False)
                                         if d["rpc"] and d["description"] == str(ep)]
                log.info("RPC server %s registered: %s", ep, ", ".join(self.devices[str(ep)]))

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return [parse_endpoint(e) for e in self.devices]

    def devices_for(self, native: Native, endpoints: tuple[str, ...], chosen: tuple[str, ...]) -> tuple[str, ...]:
        """The --device list for a model whose RPC servers are `endpoints` (after add()), where
        other models may have registered others: its servers' devices first (as llama.cpp orders
        them), then this machine's non-CPU devices; `chosen`: the model's own --device list,
        kept, with its servers' devices added. () where nothing needs picking: every registered
        RPC server is the model's, and it chose no devices (llama.cpp's default is then right)."""
        with self._lock:
            mine = [name for ep in endpoints for name in self.devices.get(ep, [])]
            others = [name for ep, names in self.devices.items() if ep not in endpoints for name in names]
        if not others and not chosen:
            return ()
        if chosen:
            return tuple(dict.fromkeys([*mine, *(c for c in chosen if c.lower() != "none")])) or ("none",)
        return tuple(mine + _offload_devices(native)) or ("none",)


def serve(native: Native, host: str, port: int, threads: int, device_names: list[str], cache_dir: str | None) -> None:
    """Run ggml's RPC server on this thread until the process ends (llama.cpp's rpc-server)."""
    g = native.ggml
    local = [d for d in device_list(native) if not d["rpc"]]
    # rpc-server's choice: every device that is not the CPU or an accelerator, else the CPU
    names = device_names or _offload_devices(native) or [d["name"] for d in local if d["type"] == "cpu"][:1]
    picked = []
    for name in names:
        dev = g.ggml_backend_dev_by_name(name.encode())
        if not dev:
            raise ConfigError(f"--device: no device {name!r} (this build has: {', '.join(d['name'] for d in local)})")
        picked.append(dev)
    reg = _rpc_reg(native)
    start = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                             ctypes.POINTER(ctypes.c_void_p))(
        g.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_start_server"))
    arr = (ctypes.c_void_p * len(picked))(*picked)
    start(f"{host}:{port}".encode(), cache_dir.encode() if cache_dir else None, threads, len(picked), arr)


def _offload_devices(native: Native) -> list[str]:
    """This machine's devices that take offloaded layers: not RPC, not the CPU, not an accelerator."""
    return [d["name"] for d in device_list(native, rpc_memory=False) if not d["rpc"] and d["type"] not in ("cpu", "accel")]


# -- an RPC server that dies -------------------------------------------------------------------
# llama.cpp ends the process (GGML_ABORT) when an RPC server stops answering in the middle of a
# decode or a load. These are its messages for that (ggml-rpc.cpp).
_RPC_ABORTS = ("Remote RPC server crashed", "Failed to connect to", "RPC handshake failed")
_ABORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


class DeviceGuard:
    """Keeps a dead RPC server from ending the process: ggml's abort callback, for RPC failures
    only, reports the failure (`on_lost`, from the failing native thread) and parks that thread
    for good instead of returning to abort(). Whatever waits on that thread (a decode, a load)
    then waits for ever: the caller marks those models lost and ends their requests; the rest of
    the server goes on. Every other abort is left to ggml (message, then abort()).

    A process whose guard fired must end with os._exit: the RPC backend's exit-time destructors
    would join the parked thread."""

    def __init__(self, servers: RpcDevices) -> None:
        self.servers = servers
        self.lost: str | None = None
        self._keep: Any = None

    def install(self, native: Native, on_lost: Callable[[str], None]) -> None:
        import threading

        def on_abort(raw: bytes | None) -> None:
            text = (raw or b"").decode("utf-8", "replace")
            if not any(m in text for m in _RPC_ABORTS):
                print(text, file=sys.stderr, flush=True)
                return  # ggml aborts the process, as it does without a guard
            log.error("%s", text)
            self.lost = self.lost or text.split(": ", 1)[-1].strip()
            try:
                on_lost(self.lost)
            except Exception:  # noqa: BLE001 - never let the report end the process
                log.exception("reporting a lost RPC server")
            threading.Event().wait()  # parked: never returns to ggml_abort

        fn = native.ggml.ggml_set_abort_callback
        fn.argtypes, fn.restype = [_ABORT_CALLBACK], ctypes.c_void_p
        self._keep = _ABORT_CALLBACK(on_abort)
        fn(self._keep)

    def which_lost(self) -> list[str]:
        """The endpoints that are gone: nothing listens there, or the connection is reset
        (blocking: a worker thread). A server that accepts but does not answer in time is not
        counted: it serves one client at a time, and this process holds its connection."""
        dead = []
        for ep in self.servers.endpoints():
            try:
                with socket.create_connection((ep.host, ep.port), timeout=2.0):
                    pass
            except TimeoutError:
                continue
            except OSError:
                dead.append(str(ep))
        return dead

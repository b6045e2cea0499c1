"""argv → Settings, and the subcommands: serve, info, models, pull, rpc-server and the rest."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .config import OPTIONS, Settings, resolve
from .errors import ConfigError
from .llama_flags import ACCEPTED

if TYPE_CHECKING:
    from .llm.rpc import RpcDevices


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit code 2 with a clear message, as argparse does
        self.print_usage(sys.stderr)
        self.exit(2, f"chimera: error: {message}\n")

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        """No guessing: argparse reads an unknown `-md` as `-m d` and `--ctx` as `--ctx-size`;
        llama-server's many short flags make both wrong, so an unknown option is an error."""
        return []


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help="TOML config file (keys as the long flag names)")
    for opt in OPTIONS:
        kw: dict[str, Any] = {"dest": opt.dest, "default": argparse.SUPPRESS, "help": opt.help}
        if opt.kind == "flag":
            kw["action"] = "store_true"
        elif opt.kind == "list":
            kw["action"] = "append"
            kw["metavar"] = opt.metavar or "VALUE"
        elif opt.kind == "pairs":
            kw["action"] = "append"
            kw["nargs"] = 2
            kw["metavar"] = ("PATH", "SCALE")
        else:
            kw["metavar"] = opt.metavar or "VALUE"
        p.add_argument(*opt.flags, **kw)
    notes = p.add_argument_group("llama-server flags accepted without effect")
    for acc in ACCEPTED:
        if acc.value:
            notes.add_argument(*acc.flags, dest="_accepted", action="append", default=argparse.SUPPRESS, metavar="VALUE", help=acc.note)
        else:
            notes.add_argument(*acc.flags, dest="_accepted", action="append_const", const=acc.flags[-1], default=argparse.SUPPRESS,
                               help=acc.note)


def accepted_notes(argv: Sequence[str]) -> list[str]:
    """One line for each llama-server flag given that has no effect here."""
    out = []
    for acc in ACCEPTED:
        for flag in acc.flags:
            if any(a == flag or a.startswith(flag + "=") for a in argv):
                out.append(f"{flag}: accepted without effect: {acc.note}")
    return out


def setting_notes(settings: Settings) -> list[str]:
    out = []
    if settings.threads_http is not None:
        out.append("--threads-http: accepted without effect: chimera serves HTTP on one event loop; the engines have their own threads")
    if settings.no_cont_batching:
        out.append("--no-cont-batching: accepted without effect: batching is always continuous")
    return out


def attach_rpc(settings: Settings) -> RpcDevices | None:
    """--rpc: greet every endpoint and register its devices before anything loads (a server that
    does not answer is a ConfigError naming it: exit 2)."""
    if not settings.rpc:
        return None
    from .llm.native import device_list, load
    from .llm.rpc import RpcDevices, parse_endpoint

    servers = RpcDevices()
    native = load()
    servers.add(native, [parse_endpoint(x) for x in settings.rpc])
    mib = 1024 * 1024
    for d in device_list(native):
        if d["rpc"]:
            print(f"chimera: RPC device {d['name']} at {d['description']}: {d['memory_total'] // mib} MiB "
                  f"({d['memory_free'] // mib} MiB free)", file=sys.stderr)
    return servers


def list_devices() -> int:
    """llama-server's --list-devices: every device the loaded backends offer."""
    from .llm.native import describe

    print("Available devices:")
    for d in describe()["devices"]:
        mib = 1024 * 1024
        print(f"  {d['name']}: {d['description']} ({d['memory_total'] // mib} MiB, {d['memory_free'] // mib} MiB free)")
    return 0


def _add_sd_options(p: argparse.ArgumentParser) -> None:
    """`chimera sd`: the server's --sd-* options (same names, env and config file), then the request."""
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help="TOML config file (keys as the long flag names)")
    for opt in OPTIONS:
        if opt.dest.startswith("sd_") and opt.dest not in ("sd_workers",):
            kw: dict[str, Any] = {"dest": opt.dest, "default": argparse.SUPPRESS, "help": opt.help,
                                  "metavar": opt.metavar or "VALUE"}
            if opt.kind == "list":
                kw["action"] = "append"
            p.add_argument(*opt.flags, **kw)
    r = p.add_argument_group("the image")
    r.add_argument("--prompt", dest="req_prompt", default="", help="what to draw")
    r.add_argument("--negative-prompt", dest="req_negative_prompt", default=None)
    r.add_argument("--init-image", dest="req_init_image", default=None, metavar="PATH", help="start from this image (img2img)")
    r.add_argument("--mask", dest="req_mask", default=None, metavar="PATH", help="inpaint: transparent (or white) = repaint")
    r.add_argument("--control-image", dest="req_control_image", default=None, metavar="PATH")
    r.add_argument("--output", "-o", dest="req_output", default="out.png", metavar="PATH",
                   help="where to write (with -n > 1: NAME-1.png, NAME-2.png, ...)")
    r.add_argument("--size", dest="req_size", default=None, metavar="WxH")
    r.add_argument("-n", dest="req_n", default=None, metavar="N")
    for name in ("steps", "cfg-scale", "seed", "strength", "sample-method", "scheduler", "control-strength"):
        r.add_argument(f"--{name}", dest="req_" + name.replace("-", "_"), default=None, metavar="VALUE")
    r.add_argument("--lora", dest="req_lora", action="append", default=[], metavar="NAME[:SCALE]",
                   help="apply an --sd-lora alias; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chimera", description="chimera: a download-and-run local AI server", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"chimera {__version__}")
    # no prefix matching: -cb, -ctk, -md and -ts must never be read as -c b, -c tk, -m d, -t s
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub_kw: dict[str, Any] = {"allow_abbrev": False}
    serve = sub.add_parser("serve", help="run the HTTP API server", **sub_kw)
    _add_serve_options(serve)
    info = sub.add_parser("info", help="print versions, backends, devices and effective settings as JSON", **sub_kw)
    _add_serve_options(info)
    models = sub.add_parser("models", help="prepare the default models into the cache")
    models.add_argument("action", choices=["prepare", "path"], help="prepare: fetch and build; path: print where they are")
    models.add_argument("--models-cache", dest="models_cache", default=None, metavar="PATH")
    models.add_argument("--which", default="llm", choices=["llm", "embed", "whisper", "gemma", "all"],
                        help="all: the three defaults (gemma, a second chat model, only by name)")
    pull = sub.add_parser("pull", help="download a model from Hugging Face (or a URL) into the models cache")
    pull.add_argument("repo", metavar="REPO[:QUANT] | URL", help="<user>/<model>[:quant] as -hf takes it, or an http(s) URL")
    pull.add_argument("-hff", "--hf-file", dest="hf_file", default=None, metavar="FILE", help="this file instead of picking by quant")
    pull.add_argument("-hft", "--hf-token", dest="hf_token", default=None, metavar="TOKEN", help="access token (default: $HF_TOKEN)")
    pull.add_argument("--no-mmproj", dest="no_mmproj", action="store_true", help="skip the repository's projector")
    pull.add_argument("--models-cache", dest="models_cache", default=None, metavar="PATH")
    db = sub.add_parser("db", help="the chat database: status")
    db.add_argument("action", choices=["status"])
    db.add_argument("--chat-db", dest="chat_db", default=None, metavar="PATH")
    chats = sub.add_parser("chats", help="saved chats: list, show, export, delete")
    chats.add_argument("action", choices=["list", "show", "export", "delete"])
    chats.add_argument("chat_id", nargs="?")
    chats.add_argument("--chat-db", dest="chat_db", default=None, metavar="PATH")
    chats.add_argument("--format", choices=["json", "markdown"], default="json")
    chats.add_argument("--limit", type=int, default=20)
    chats.add_argument("-q", "--query", default=None)
    whisper = sub.add_parser("whisper", help="transcribe an audio file with the same workers the server uses")
    whisper.add_argument("file")
    whisper.add_argument("--model", default=None, metavar="PATH", help="whisper.cpp ggml model (default: the prepared tiny.en)")
    whisper.add_argument("--language", default=None)
    whisper.add_argument("--translate", action="store_true")
    whisper.add_argument("--output-format", default="text", choices=["json", "text", "verbose_json", "srt", "vtt"])
    whisper.add_argument("--threads", type=int, default=2)
    from .rag.cli import add_parser as add_rag_parser

    add_rag_parser(sub)
    from .rpcserver import add_parser as add_rpc_parser

    add_rpc_parser(sub)
    sd = sub.add_parser("sd", help="generate an image with the same workers the server uses", **sub_kw)
    _add_sd_options(sd)
    shown = len(sub._choices_actions)
    sub.add_parser("_probe")
    sd_worker = sub.add_parser("_sd-worker")
    sd_worker.add_argument("config")
    worker = sub.add_parser("_audio-worker")
    worker.add_argument("model")
    worker.add_argument("threads", type=int)
    del sub._choices_actions[shown:]  # the worker subcommands stay out of --help
    return parser


def pull_main(ns: argparse.Namespace) -> int:
    """`chimera pull`: download (or find in the cache) and print the local paths."""
    from .hub import Hub, parse_repo
    from .models import default_models_dir

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    hub = Hub(default_models_dir(ns.models_cache), ns.hf_token)
    if re.match(r"^https?://", ns.repo):
        print(hub.fetch_url(ns.repo))
        return 0
    repo, quant = parse_repo(ns.repo)
    got = hub.fetch_repo(repo, quant, ns.hf_file, projector=not ns.no_mmproj)
    print(got.model)
    if got.mmproj is not None:
        print(got.mmproj)
    return 0


def parse_settings(ns: argparse.Namespace) -> Settings:
    cli = {k: v for k, v in vars(ns).items() if k not in ("command", "_accepted")}
    return resolve(cli)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if ns.command == "serve":
            from .server import serve_main

            settings = parse_settings(ns)
            for line in accepted_notes(list(argv) if argv is not None else sys.argv[1:]) + setting_notes(settings):
                print(f"chimera: {line}", file=sys.stderr)
            servers = attach_rpc(settings)
            if settings.list_devices:
                return list_devices()
            from .hub import fetch_for

            return serve_main(fetch_for(settings), servers)
        if ns.command == "info":
            from .info import collect_info

            settings = parse_settings(ns)
            attach_rpc(settings)
            print(json.dumps(collect_info(settings), indent=2))
            return 0
        if ns.command == "models":
            from .models import default_models_dir, prepare

            root = default_models_dir(ns.models_cache)
            if ns.action == "path":
                print(root)
                return 0
            for name in (["llm", "embed", "whisper"] if ns.which == "all" else [ns.which]):
                print(prepare(name, root))
            return 0
        if ns.command == "pull":
            return pull_main(ns)
        if ns.command == "rpc-server":
            from .rpcserver import main as rpc_server_main

            return rpc_server_main(ns)
        if ns.command in ("db", "chats"):
            from .store.cli import run_db_command

            return run_db_command(ns)
        if ns.command == "whisper":
            from .audio.cli import whisper_main

            return whisper_main(ns)
        if ns.command == "rag":
            from .rag.cli import rag_main

            return rag_main(ns)
        if ns.command == "_audio-worker":
            from .audio.worker import main as worker_main

            return worker_main(ns.model, ns.threads)
        if ns.command == "sd":
            from .images.cli import sd_main

            return sd_main(ns)
        if ns.command == "_sd-worker":
            from .images.worker import main as sd_worker_main

            return sd_worker_main(ns.config)
        if ns.command == "_probe":
            from .info import probe_main

            return probe_main()
    except ConfigError as e:
        print(f"chimera: error: {e}", file=sys.stderr)
        return 2
    return 2

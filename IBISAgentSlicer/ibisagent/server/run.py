"""`ibisagent serve`: options, start-up message, and the uvicorn loop.

The server binds to 127.0.0.1 unless told otherwise and always requires the bearer token.
FastAPI and uvicorn are imported only when the command runs, so the rest of the command line
works without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from .. import __version__, protocol
from ..engine import add_engine_arguments, spec_from_args
from ..memory import format_bytes
from ..policies import POLICIES
from .auth import FROM_ARGUMENT, TokenFileError, resolve_token
from .settings import SESSION_MEMORY_FRACTION

#: The simulated policy needs a ground-truth mask per image, which a server does not have.
SERVABLE_POLICIES = [name for name in POLICIES if name != "simulated"]
#: Longer than uvicorn's 5 s default so a user thinking between clicks keeps the connection.
KEEP_ALIVE_S = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("server")
    net.add_argument("--host", default=protocol.DEFAULT_HOST,
                     help="address to listen on (default: 127.0.0.1, this machine only)")
    net.add_argument("--port", type=int, default=protocol.DEFAULT_PORT, help="TCP port (default: %(default)s)")
    net.add_argument("--token", help="bearer token clients must send; visible to other users in `ps`, so prefer "
                     f"--token-file or ${protocol.TOKEN_ENV} (default: ${protocol.TOKEN_ENV}, else a token generated "
                     f"once and kept in {protocol.token_file_path()})")
    net.add_argument("--token-file", metavar="FILE",
                     help="read the bearer token from the first line of FILE (readable by you only)")
    net.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body in MB (default: 64)")
    net.add_argument("--session-ttl", type=float, default=1800.0,
                     help="seconds an idle session is kept before it expires (default: 1800)")
    net.add_argument("--max-sessions", type=int, default=64, help="most sessions kept at once (default: 64)")
    net.add_argument("--max-session-memory-mb", type=float, default=None, metavar="MB",
                     help="memory all sessions together may hold (images, masks, undo, the tool's state); a new "
                     f"session beyond it is refused (default: {int(SESSION_MEMORY_FRACTION * 100)}%% of this machine's "
                     "memory)")
    net.add_argument("--api-docs", action="store_true",
                     help="serve the API description at /openapi.json, to holders of the token (off by default)")
    net.add_argument("--workers", type=int, default=None,
                     help="model worker threads, each with its own copy of the policy and tool (default: 1 for "
                     "GPU models, min(2, CPU cores) for the CPU-only heuristic/openai policy with graphcut/growcut/watershed)")
    net.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    net.add_argument("--record", metavar="DIR",
                     help="record every session for training into this local folder: one trajectory record per "
                     "session, each applied step written at once, undone steps removed (off unless given)")
    add_engine_arguments(parser, policies=SERVABLE_POLICIES)


def run(args: argparse.Namespace) -> int:
    """Start the server and block until it is stopped (Ctrl+C). Returns the exit status."""
    try:
        import uvicorn

        from .app import make_app
        from .settings import Settings
        from .worker import default_workers
    except ImportError as error:
        print(f"error: the server needs its extra packages ({error.name} is missing): "
              "pip install 'ibisagent[server]'", file=sys.stderr)
        return 2
    try:
        token, source = resolve_token(args.token, token_file=args.token_file)
        engine = spec_from_args(args)
        settings = Settings(
            token=token, host=args.host, port=args.port, engine=engine,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            session_ttl_s=args.session_ttl, reaper_interval_s=min(30.0, args.session_ttl / 4),
            max_sessions=args.max_sessions,
            workers=default_workers(engine) if args.workers is None else args.workers,
            record_dir=args.record, api_docs=args.api_docs,
            **({} if args.max_session_memory_mb is None else
               {"max_session_bytes": int(args.max_session_memory_mb * 2**20)}),
        )
        app = make_app(settings)
    except (ValueError, TokenFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(startup_message(settings, source), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_keep_alive=KEEP_ALIVE_S)
    return 0


def startup_message(settings, token_source: str) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    lines = [
        f"IBISAgent agent server {__version__} (API {protocol.API_VERSION}) listening on {url}",
        f"  policy: {settings.engine.policy}   segmentation tool: {settings.engine.segmenter}   model workers: {settings.workers}"
        f"   (models load in the background;"
        f" {url}{protocol.HEALTH} says ready: true when done)",
        f"  authenticate with the header 'Authorization: Bearer <token>'; the token is {token_source}.",
    ]
    lines.append(f"  sessions may hold up to {format_bytes(settings.max_session_bytes)} of memory together "
                 "(--max-session-memory-mb).")
    if token_source != FROM_ARGUMENT:
        lines.append(f"  clients on this machine find it by themselves: AgentClient({url!r}) or "
                     f"set {protocol.TOKEN_ENV}=<token> elsewhere.")
    if settings.record_dir is not None:
        lines.append(f"  recording every session for training into {os.path.abspath(settings.record_dir)}"
                     " (this disk only).")
    if not _is_loopback(settings.host):
        lines.append("  warning: listening beyond this machine; anyone who can reach the port and holds the token"
                     " can send images. Prefer an SSH tunnel to 127.0.0.1.")
    return "\n".join(lines)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

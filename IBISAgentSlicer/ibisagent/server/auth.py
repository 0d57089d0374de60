"""Where the server's bearer token comes from, and how it is compared.

Order: ``--token`` (visible to every user of the machine in ``ps``: for quick tests only), then
``--token-file FILE`` (a file of yours holding the token; read, never changed), then the
``IBISAGENT_TOKEN`` environment variable, then the default token file
(``$XDG_CONFIG_HOME/ibisagent/token``, default ``~/.config/ibisagent/token``), which is created
on first start with a random token, readable by its owner only (0600, folder 0700), so that
other users of a shared workstation cannot drive the agent or read patient slices through it.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Optional, Tuple

from .. import protocol

FROM_ARGUMENT = "the --token option (visible to other users in `ps`; prefer --token-file or IBISAGENT_TOKEN)"
FROM_ENVIRONMENT = f"the {protocol.TOKEN_ENV} environment variable"


class TokenFileError(RuntimeError):
    """The token file cannot be read or created safely."""


def default_token_path() -> Path:
    return Path(protocol.token_file_path())


def resolve_token(explicit: Optional[str] = None, path: Optional[Path] = None,
                  token_file: Optional[str] = None) -> Tuple[str, str]:
    """Return (token, where it came from), creating the token file when nothing else gives one."""
    if explicit:
        return explicit.strip(), FROM_ARGUMENT
    if token_file:
        return read_token_file(Path(token_file)), f"the file {token_file} (--token-file)"
    from_env = os.environ.get(protocol.TOKEN_ENV, "").strip()
    if from_env:
        return from_env, FROM_ENVIRONMENT
    path = Path(path) if path is not None else default_token_path()
    return load_or_create_token(path), f"the file {path}"


def load_or_create_token(path: Path) -> str:
    """Read the token at ``path``; create it (0600) with a fresh random token if it is missing."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_private(path)
        token = secrets.token_urlsafe(32)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        return token
    except OSError as error:
        raise TokenFileError(f"Cannot read or create the token file {path}: {error}. Pass --token instead.") from None


def read_token_file(path: Path) -> str:
    """The token in a file the user gave (its first line); the file is only read. A file other
    users can read is refused: they could use the token."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        lines = path.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TokenFileError(f"Cannot read the token file {path}: {error}.") from None
    if mode & 0o077:
        raise TokenFileError(f"The token file {path} can be read by other users (mode {mode:o}); "
                             f"make it private first: chmod 600 {path}")
    if not lines or not lines[0].strip():
        raise TokenFileError(f"The token file {path} is empty; write the token on its first line.")
    return lines[0].strip()


def _read_private(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)  # the file is ours; close it to others before trusting it
    token = path.read_text(encoding="ascii").strip()
    if not token:
        raise TokenFileError(f"The token file {path} is empty; delete it to get a new token.")
    return token


def token_matches(expected: str, authorization: Optional[str]) -> bool:
    """True if the Authorization header carries ``Bearer <expected>`` (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != protocol.BEARER.lower():
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))

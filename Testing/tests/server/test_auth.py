"""Where the token comes from, and that a generated one is private to its owner."""

from __future__ import annotations

import stat

import pytest
from ibisagent import protocol
from ibisagent.server.auth import FROM_ARGUMENT, FROM_ENVIRONMENT, resolve_token, token_matches
from ibisagent.server.run import startup_message
from ibisagent.server.settings import Settings


def test_token_order_and_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(protocol.TOKEN_ENV, raising=False)
    assert resolve_token("given") == ("given", FROM_ARGUMENT)
    token, source = resolve_token()
    path = tmp_path / "ibisagent" / "token"
    assert str(path) in source and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert resolve_token()[0] == token  # stable across restarts
    path.chmod(0o644)
    assert resolve_token()[0] == token and stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(protocol.TOKEN_ENV, "from-env")
    assert resolve_token() == ("from-env", FROM_ENVIRONMENT)


def test_token_comparison():
    assert token_matches("abc", "Bearer abc") and token_matches("abc", "bearer abc")
    assert not token_matches("abc", "Bearer abd") and not token_matches("abc", None)
    assert not token_matches("abc", "Basic abc")


def test_startup_message_says_where_and_how(tmp_path):
    text = startup_message(Settings(token="t"), f"the file {tmp_path}/token")
    assert "http://127.0.0.1:8765" in text and "Authorization: Bearer" in text and str(tmp_path) in text
    assert "warning" in startup_message(Settings(token="t", host="0.0.0.0"), FROM_ARGUMENT)


def test_settings_refuse_empty_token():
    with pytest.raises(ValueError, match="token"):
        Settings(token="")

"""The published OpenAPI schema is complete enough for schemathesis: a bounded run of generated
requests (valid and invalid) against a real server finds no server error and no response that
breaks the schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from server_fakes import TOKEN, start_fake_server


@pytest.fixture(scope="module")
def server():
    """The API description is served only with --api-docs (and only with the token)."""
    with start_fake_server(api_docs=True) as running:
        yield running

ST = shutil.which("schemathesis") or os.path.join(os.path.dirname(sys.executable), "schemathesis")


def test_schemathesis_finds_no_server_error(server, tmp_path):
    command = [
        ST, "run", f"{server.url}/openapi.json",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--max-examples", "8", "--seed", "1", "--no-color",
        "--suppress-health-check", "all", "--generation-with-security-parameters", "false",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=170, cwd=tmp_path)  # its cache stays out of the repo
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]

"""What the in-process engine and a local agent server need, read from the one place it is
written: the project's ``pyproject.toml``.

The engine in this process needs the package's own dependencies (``[project] dependencies``); a
server started inside Slicer's Python needs those plus the ``server`` extra. The file sits one
folder above the module in a source checkout and next to ``IBISAgent.py`` in a built extension
(the module's CMakeLists.txt installs it there). It is read with ``tomllib`` where Python has it
(3.11+) and otherwise with `_read_arrays`, which understands the plain string arrays this file
uses (Slicer 5.6 and 5.8 ship Python 3.9).

Nothing is imported here. `install` installs with ``slicer.util.pip_install`` (Slicer's main
thread only); the logic lists what is missing and installs it after the widget asked the user
once with the full list.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Dict, List, Optional, Sequence

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT_PLACES = (os.path.join(MODULE_DIR, "pyproject.toml"), os.path.join(os.path.dirname(MODULE_DIR), "pyproject.toml"))

#: Distributions whose import name is not their own name (the others import as themselves).
IMPORT_NAMES = {"pillow": "PIL", "pynrrd": "nrrd"}


class RequirementsError(RuntimeError):
    """The project file with the requirements cannot be found or read."""


class InstallError(RuntimeError):
    """Installing the packages failed; the message says which and whether to restart Slicer."""


def find_pyproject() -> str:
    for path in PYPROJECT_PLACES:
        if os.path.isfile(path):
            return path
    raise RequirementsError(
        "Cannot find pyproject.toml next to the IBISAgent module (looked in " + ", ".join(PYPROJECT_PLACES)
        + "); reinstall the extension or use a full checkout."
    )


def _read_arrays(text: str) -> Dict[str, Dict[str, List[str]]]:
    """``{table: {key: [strings]}}`` for the string-array keys of a TOML text (comments and
    blank lines allowed, one level of tables)."""
    tables: Dict[str, Dict[str, List[str]]] = {}
    table = ""
    lines = iter(text.splitlines())
    for line in lines:
        line = _uncomment(line).strip()
        header = re.fullmatch(r"\[([^\[\]]+)\]", line)
        if header:
            table = header.group(1).strip()
            continue
        item = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*=\s*\[(.*)", line)
        if not item:
            continue
        body = item.group(2)
        while "]" not in body:
            body += " " + _uncomment(next(lines))
        tables.setdefault(table, {})[item.group(1)] = re.findall(r'"([^"]*)"', body.split("]")[0])
    return tables


def _uncomment(line: str) -> str:
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == "#" and not quoted:
            return line[:index]
    return line


def read_requirements(extras: Sequence[str] = (), path: Optional[str] = None) -> List[str]:
    """The project's dependencies plus those of ``extras``, as pip requirement strings."""
    path = path or find_pyproject()
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        import tomllib
    except ImportError:
        tables = _read_arrays(text)
        project = tables.get("project", {})
        optional = tables.get("project.optional-dependencies", {})
    else:
        data = tomllib.loads(text).get("project", {})
        project, optional = data, data.get("optional-dependencies", {})
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise RequirementsError(f"{path} has no '{extra}' extra.")
        requirements += [r for r in optional[extra] if r not in requirements]
    return requirements


def engine_requirements() -> List[str]:
    """What the in-process engine (heuristic policy, graphcut tool) needs."""
    return read_requirements()


def server_requirements() -> List[str]:
    """What `ibisagent serve` needs in the same Python."""
    return read_requirements(("server",))


def import_name(requirement: str) -> str:
    """The module a requirement such as "pillow>=9.0" is imported as ("PIL")."""
    name = re.split(r"[<>=!~;\[\s]", requirement.strip(), maxsplit=1)[0]
    return IMPORT_NAMES.get(name.lower(), name.replace("-", "_"))


def missing(requirements: Sequence[str]) -> List[str]:
    """The requirements this Python cannot import (a copy Slicer ships counts as present);
    imports nothing."""
    return [r for r in requirements if importlib.util.find_spec(import_name(r)) is None]


def install(requirements: Sequence[str]) -> None:
    """Install ``requirements`` into this Python with Slicer's ``pip_install`` (main thread).
    Raises InstallError saying what failed; afterwards the new packages are importable."""
    if not requirements:
        return
    import slicer.util

    try:
        slicer.util.pip_install(list(requirements))
    except Exception as error:  # noqa: BLE001 - pip's own errors vary; one message for the user
        raise InstallError(
            f"Installing {', '.join(requirements)} failed ({error}). Check the network and the Python console, "
            "then try again; if a package Slicer had already loaded was changed, restart Slicer first."
        ) from error
    importlib.invalidate_caches()
    still = missing(requirements)
    if still:
        raise InstallError(f"{', '.join(still)} cannot be imported after installing; restart Slicer and try again.")

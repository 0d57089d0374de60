"""Build a component from a name-to-builder table without importing what is not chosen.

Tables map a name to ``"module:function"``; the module is imported only when that name is
built, so choosing the classical tool never loads torch.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Dict


def build_named(table: Dict[str, str], kind: str, name: str, options: dict):
    """Call the builder registered under ``name`` with ``options``.

    Raises ValueError naming the known choices for an unknown name, and the builder's accepted
    options for an unknown option, instead of a bare TypeError.
    """
    if name not in table:
        raise ValueError(f"Unknown {kind} {name!r}; choose one of: {', '.join(table)}.")
    module_name, function_name = table[name].split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    parameters = inspect.signature(builder).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(options) - set(parameters)) if not takes_any else []
    if unknown:
        accepted = ", ".join(p for p in parameters) or "none"
        raise ValueError(f"The {kind} {name!r} has no option {', '.join(unknown)}; its options are: {accepted}.")
    try:
        return builder(**options)
    except TypeError as error:  # a builder that forwards **options to a constructor
        if "unexpected keyword argument" not in str(error):
            raise
        raise ValueError(f"The {kind} {name!r} does not take that option: {error}.") from error

"""The layering of ARCHITECTURE.md, checked on the source: dependencies point one way (no import
cycle anywhere, imports inside functions included), the client and the Slicer side stay
torch-free and parse as Python 3.9 (Slicer's Python)."""

import ast
import graphlib
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3] / "IBISAgentSlicer"
ENGINE = ROOT / "ibisagent"
SLICER_SIDE = [ROOT / "IBISAgent.py", *sorted((ROOT / "IBISAgentLib").glob("*.py"))]
WIRE = [ENGINE / name for name in ("client.py", "protocol.py", "mask_codec.py", "errors.py", "session.py", "engine.py")]
HEAVY = {"torch", "torchvision", "transformers", "segment_anything", "sam2", "fastapi", "uvicorn", "starlette"}


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


ALL_SOURCES = sorted(ENGINE.rglob("*.py")) + SLICER_SIDE


@pytest.mark.parametrize("path", ALL_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_parses_as_python_3_9(path):
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def _module_names():
    """{dotted module name: (path, is a package)} for ibisagent, IBISAgentLib and the module file."""
    names = {"IBISAgent": (ROOT / "IBISAgent.py", False)}
    for package in ("ibisagent", "IBISAgentLib"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            names[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return names


def import_graph():
    """{module: {modules it imports}} over every import statement, at any depth (inside
    functions and ``if`` blocks too). ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``; the parent packages Python imports on the
    way are not edges (a package's ``__init__`` may import its own modules)."""
    names = _module_names()

    def known(dotted):
        while dotted and dotted not in names:
            dotted = dotted.rpartition(".")[0]
        return dotted

    graph = {}
    for module, (path, is_package) in names.items():
        package = module.split(".") if is_package else module.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if full in names else known(base))
        graph[module] = edges - {"", module}
    return graph


def test_no_import_cycle_function_level_imports_included():
    graph = import_graph()
    assert {"ibisagent.cli", "ibisagent.engine", "IBISAgentLib.logic"} <= set(graph)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail("import cycle: " + " -> ".join(error.args[1]))


def test_the_cycle_check_sees_imports_inside_functions():
    graph = import_graph()
    assert "ibisagent.engine" in graph["ibisagent.demo"]  # a top-level import
    assert "ibisagent.demo" in graph["ibisagent.cli"]  # imported inside main()
    graph["ibisagent.engine"].add("ibisagent.cli")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


def test_engine_never_imports_the_slicer_side():
    for path in ENGINE.rglob("*.py"):
        for module, line in _imports(path):
            assert module not in {"slicer", "vtk", "qt", "ctk", "IBISAgentLib"}, f"{path}:{line} imports {module}"


@pytest.mark.parametrize("path", WIRE + SLICER_SIDE, ids=lambda p: p.name)
def test_wire_and_slicer_side_import_nothing_heavy(path):
    if not path.exists():
        pytest.fail(f"{path} is missing")
    for module, line in _imports(path):
        assert module not in HEAVY, f"{path.name}:{line} imports {module}"


def test_light_modules_load_no_heavy_package():
    code = (
        "import sys\n"
        "import ibisagent.client, ibisagent.protocol, ibisagent.mask_codec, ibisagent.cli, ibisagent.episode\n"
        "import ibisagent.policies.heuristic, ibisagent.segmenters.graphcut, ibisagent.segmenters.sam\n"
        "import ibisagent.segmenters.sam2, ibisagent.segmenters.litemedsam, ibisagent.policies.qwen\n"
        f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

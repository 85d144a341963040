"""Every command's ``--help`` answers from its parser alone: torch is never imported (a check, not a timer)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

# Run as the program itself: argv[0] is the command, as the console script (pyproject) or the file sets it.
SNIPPET = """
import sys
sys.argv = [{program!r}, *{args!r}]
try:
    {run}
except SystemExit as stop:
    code = stop.code
print("EXIT", code, "TORCH", "torch" in sys.modules)
"""
SCRIPTS = {"train.py": "train.py", "export.py": "export.py"}
CONSOLE = {
    "kit-eval": "kit.cli.eval",
    "kit-fit": "kit.cli.fit",
    "kit-data": "kit.cli.data",
    "kit-inspect": "kit.cli.inspect",
    "kit-prune": "kit.cli.prune",
}


def run_program(program: str, run: str, args: list[str]) -> str:
    code = SNIPPET.format(program=program, args=args, run=run)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def help_of(name: str, args: list[str]) -> str:
    if name in SCRIPTS:
        path = str(REPO / SCRIPTS[name])
        return run_program(path, f"import runpy; code = 0; runpy.run_path({path!r}, run_name='__main__')", args)
    return run_program(name, f"code = 0; from {CONSOLE[name]} import main; main()", args)


@pytest.mark.parametrize("name", [*SCRIPTS, *CONSOLE])
def test_help_without_torch(name: str) -> None:
    out = help_of(name, ["--help"])
    assert out.rstrip().endswith("EXIT 0 TORCH False"), out[-2000:]
    assert "usage:" in out
    if name != "kit-data":
        assert "examples:" in out


def test_a_usage_error_answers_without_torch() -> None:
    out = help_of("train.py", ["-opt"])  # -opt without its file: argparse's exit 2
    assert out.rstrip().endswith("EXIT 2 TORCH False"), out[-2000:]


def test_hyphenated_spellings_beside_basicsr_underscores() -> None:
    from kit.cli.train import parse_args

    a = parse_args(["-opt", "x.yml", "--auto-resume", "--force-yml", "name=a", "train:total_iter=4"])
    b = parse_args(["-opt", "x.yml", "--auto_resume", "--force_yml", "name=a", "train:total_iter=4"])
    assert a == b and a.auto_resume and a.force_yml == ["name=a", "train:total_iter=4"]


def test_the_light_parsers_name_what_the_kit_has() -> None:
    """The parsers' literal choices and defaults (kept torch-free) are the kit's own."""
    import kit.cli.data as data_cli
    import kit.cli.export as export_cli
    import kit.cli.fit as fit_cli
    import kit.cli.prune as prune_cli
    from kit.archs.sizing import FAMILIES
    from kit.data.bundled import DEFAULT_ROOT
    from kit.export.int8 import CALIBRATION_METHODS, FLOAT_PARTS
    from kit.export.onnx_export import FP16_TOLERANCE
    from kit.export.submission import DEFAULT_MAX_PARAMS, DEFAULT_OUT_DIR
    from kit.prune.families import FAMILIES as PRUNE_FAMILIES
    from kit.prune.importance import CRITERIA
    from kit.prune.procedure import FORMS

    assert tuple(sorted(FAMILIES)) == fit_cli.FAMILY_NAMES
    assert export_cli.CALIBRATION_METHODS == CALIBRATION_METHODS and export_cli.FLOAT_PARTS == FLOAT_PARTS
    assert export_cli.FP16_TOLERANCE == FP16_TOLERANCE and export_cli.DEFAULT_MAX_PARAMS == DEFAULT_MAX_PARAMS
    assert export_cli.build_parser().get_default("out_dir") == str(DEFAULT_OUT_DIR)
    assert data_cli.DEFAULT_ROOT == DEFAULT_ROOT
    assert tuple(sorted(PRUNE_FAMILIES)) == prune_cli.FAMILY_NAMES and tuple(CRITERIA) == prune_cli.CRITERIA
    assert FORMS == prune_cli.FORMS

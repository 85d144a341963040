"""Run an NTIRE package the way the organisers do, with the kit out of reach: ``python -I check_package.py ...``.

Started by :func:`kit.export.ntire.package.verify_package` in a fresh interpreter. This file imports nothing from
the kit, and before anything else it makes ``kit``, ``basicsr`` and ``spandrel`` unimportable (an editable install
would otherwise find them whatever ``sys.path`` says) and drops the repository from ``sys.path``; it then checks
that ``import kit`` fails. In the package folder it runs ``select_model.txt`` inside a ``select_model`` shaped like
the one of NTIRE's ``test_demo.py`` (import the class, build it, ``load_state_dict(<the loaded .pth>, strict=True)``,
``eval``), feeds the inputs of ``inputs.pt`` and writes, as JSON: the max abs error against each expected output,
whether a hidden package got loaded, and fvcore's FLOPs of the model at the organisers' 1x3x256x256 input.

Usage: ``python -I check_package.py PACKAGE_DIR MODEL_ID INPUTS_PT RESULT_JSON``.
"""

import importlib.abc
import json
import os
import sys
from pathlib import Path

HIDDEN = ("kit", "basicsr", "spandrel")


class _Refuse(importlib.abc.MetaPathFinder):
    """Refuse the hidden packages, as on the organisers' machine where they are not installed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named '{fullname}' (hidden for the NTIRE package check)")
        return None


def _hide_the_kit() -> None:
    repo = Path(__file__).resolve().parents[3]
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != repo and not (Path(p) / "kit").is_dir()]
    sys.meta_path.insert(0, _Refuse())


def _kit_importable() -> bool:
    try:
        import kit  # noqa: F401
    except ImportError:
        return False
    return True


_TEST_DEMO = """
import os
import torch


def select_model(args, device):
    model_id = args.model_id
    if model_id < 0:
        raise NotImplementedError("negative model ids are the organisers' baselines")
{branch}
    else:
        raise NotImplementedError(f"Model {{model_id}} is not implemented.")
    model.eval()
    tile = None
    for k, v in model.named_parameters():
        v.requires_grad = False
    model = model.to(device)
    return model, name, data_range, tile
"""


def main(argv: list) -> int:
    _hide_the_kit()
    package, model_id, inputs_file, result_file = Path(argv[0]), int(argv[1]), argv[2], argv[3]
    result = {"kit_importable": _kit_importable()}

    import types

    import torch

    os.chdir(package)
    sys.path.insert(0, str(package))
    branch = (package / "select_model.txt").read_text(encoding="utf-8")
    scope = {}
    exec(compile(_TEST_DEMO.format(branch=branch.rstrip()), "test_demo.py", "exec"), scope)
    args = types.SimpleNamespace(model_id=model_id)  # what test_demo.py passes: its parsed arguments
    model, name, data_range, _ = scope["select_model"](args, torch.device("cpu"))
    result.update(name=name, data_range=data_range, params=sum(p.numel() for p in model.parameters()))
    result["hidden_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)

    data = torch.load(inputs_file, weights_only=True)
    errors = []
    with torch.no_grad():
        for x, expected in zip(data["inputs"], data["outputs"]):
            out = model(x * data_range) / data_range
            errors.append(
                {
                    "input_shape": list(x.shape),
                    "output_shape": list(out.shape),
                    "max_abs_error": _max_abs(out, expected),
                }
            )
    result["checks"] = errors
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError:
        result["fvcore_flops"] = None
    else:
        counter = FlopCountAnalysis(model, torch.rand(1, 3, 256, 256))
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        result["fvcore_flops"] = int(counter.total())
    Path(result_file).write_text(json.dumps(result), encoding="utf-8")
    return 0


def _max_abs(out, expected) -> float:
    if tuple(out.shape) != tuple(expected.shape):
        return float("inf")
    return float((out.float() - expected.float()).abs().max())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

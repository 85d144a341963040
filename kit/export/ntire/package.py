"""The NTIRE Efficient SR package: ``models/team<ID>_<Name>.py``, ``model_zoo/team<ID>_<Name>.pth``, the snippet.

What the organisers' ``test_demo.py`` needs (NTIRE ESR 2022-2026): exactly one model file that imports only
``torch``, with a class built without arguments; its weights as a plain state dict for
``load_state_dict(<the loaded .pth>, strict=True)``; and the branch of ``select_model()`` that imports the class,
sets ``data_range`` (1.0: the kit's students take RGB in [0, 1]), builds it and loads the weights.

:func:`write_package` writes the three files from the deployed network and its family's torch-only source
(:mod:`kit.export.ntire.families`); :func:`verify_package` runs them in a fresh ``python -I -B`` (``-B``: no
bytecode written into the package) where ``kit``, ``basicsr`` and ``spandrel`` cannot be imported
(``check_package.py``) and compares the outputs with the kit's deployed network at two input sizes (max abs error
<= :data:`NTIRE_TOLERANCE`). The caller writes into a staging folder, so a package that fails its check is never
submitted.
"""

from __future__ import annotations

import ast
import json
import keyword
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kit.export.ntire.families import Family, family_arguments, family_for, family_source
from kit.export.onnx_export import ExportError

__all__ = [
    "NTIRE_TOLERANCE",
    "NtireError",
    "NtirePackage",
    "check_request",
    "class_name",
    "verify_package",
    "write_package",
]

NTIRE_TOLERANCE = 1e-5  # max |NTIRE file - kit deployed network| on [0, 1] images (same ops, same weights)
CHECK_SCRIPT = Path(__file__).resolve().parent / "check_package.py"
_RESERVED = {"torch", "nn", "F", "os", "name", "model"}


class NtireError(ExportError):
    """The NTIRE package cannot be written, or does not compute what the kit's deployed network computes."""


@dataclass
class NtirePackage:
    """The package's files (relative to its folder), its identity and, after :func:`verify_package`, the checks."""

    folder: Path
    team: str
    name: str
    base: str
    arguments: dict[str, Any]
    model_file: str
    weights_file: str
    snippet_file: str = "select_model.txt"
    checks: list[dict[str, Any]] = field(default_factory=list)
    fvcore_flops: int | None = None

    def record(self) -> dict[str, Any]:
        """The manifest's ``ntire`` entry."""
        return {
            "folder": "ntire",
            "model_file": f"ntire/{self.model_file}",
            "weights_file": f"ntire/{self.weights_file}",
            "select_model": f"ntire/{self.snippet_file}",
            "class": self.name,
            "team": self.team,
            "data_range": 1.0,
            "source": f"{self.base} (kit/export/ntire/sources), the deployed network's configuration: {self.arguments}",
            "verified": {
                "how": "fresh `python -I` with kit, basicsr and spandrel unimportable; the select_model branch run as "
                "test_demo.py does; output vs the kit's deployed network",
                "tolerance": NTIRE_TOLERANCE,
                "checks": self.checks,
                "fvcore_flops_of_the_file": self.fvcore_flops,
            },
        }


def class_name(text: str) -> str:
    """A CamelCase Python class name from a submission name: ``distill_rlfn_x4`` -> ``DistillRlfnX4``."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    return "".join(w[:1].upper() + w[1:] for w in words)


def check_request(network_g: Mapping[str, Any], team_id: int, name: str) -> None:
    """Refuse, before any work, a team id, class name or student family the package cannot be written for.

    Raises:
        ValueError: negative team id, no torch-only source for the family, or a class name that is not a Python
            identifier or clashes with the source's names.
    """
    if team_id < 0:
        raise ValueError(f"--ntire-team must be a team id >= 0, got {team_id}")
    family = family_for(str(network_g.get("type")))
    _check_class_name(name, family, family_source(family))


def _check_class_name(name: str, family: Family, source: str) -> None:
    defined = {n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
    if not name.isidentifier() or keyword.iskeyword(name) or not name[:1].isalpha():
        raise ValueError(f"NTIRE class name '{name}' is not a Python class name; pass --ntire-name, e.g. MyNet")
    if name in defined or name in _RESERVED:
        raise ValueError(
            f"NTIRE class name '{name}' clashes with a name the {family.base} source defines or uses; pass another "
            "--ntire-name"
        )


def _model_source(name: str, team: str, family: Family, arguments: Mapping[str, Any], scale: int, arch: str) -> str:
    source = family_source(family)
    _check_class_name(name, family, source)
    args = "".join(f"            {k}={v!r},\n" for k, v in arguments.items())
    task = f"x{scale} super-resolution" if scale > 1 else "same-size restoration"
    header = f'''"""team{team}_{name}: {arch} ({task}), exported by kit in its deployed form. Imports only torch.

Input and output: float32 RGB in [0, 1], N x 3 x H x W -> N x 3 x {scale}H x {scale}W (data_range 1.0).
Weights: model_zoo/team{team}_{name}.pth, a plain state dict (strict=True).
"""

'''
    tail = f'''

class {name}({family.base}):
    """The submitted configuration of {family.base}; built without arguments, as test_demo.py does."""

    def __init__(self) -> None:
        super().__init__(
{args}        )
'''
    return header + source + tail


def _snippet(team: str, name: str, model_id: int, arch: str) -> str:
    return f"""    elif model_id == {model_id}:
        # {name}: {arch} trained and exported by kit (deployed form); input RGB in [0, 1]
        from models.team{team}_{name} import {name}
        name, data_range = f"{{model_id:02}}_{name}", 1.0
        model_path = os.path.join("model_zoo", "team{team}_{name}.pth")
        model = {name}()
        model.load_state_dict(torch.load(model_path, weights_only=True), strict=True)
"""


def write_package(
    folder: str | os.PathLike,
    deployed: nn.Module,
    network_g: Mapping[str, Any],
    team_id: int,
    name: str,
    scale: int,
) -> NtirePackage:
    """Write ``folder/models/team<ID>_<name>.py``, ``folder/model_zoo/team<ID>_<name>.pth`` and ``select_model.txt``.

    Args:
        folder: The package folder (created; normally ``<submission>/ntire`` in the staging folder).
        deployed: The deployed (fused, eval) kit network whose weights are saved.
        network_g: The options' ``network_g`` (its ``type`` picks the family, its values the configuration).
        team_id: NTIRE team id (zero-padded to two digits, as the organisers name files).
        name: The class name (a Python identifier).
        scale: The network's scale (for the file's docstring).

    Raises:
        ValueError: see :func:`check_request`.
        NtireError: the written file imports something other than torch.
    """
    from basicsr.utils.registry import ARCH_REGISTRY

    check_request(network_g, team_id, name)
    arch = str(network_g["type"])
    family = family_for(arch)
    arguments = family_arguments(family, ARCH_REGISTRY.get(arch), network_g)
    team = f"{team_id:02d}"
    folder = Path(folder)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "model_zoo").mkdir(parents=True, exist_ok=True)
    package = NtirePackage(
        folder, team, name, family.base, arguments, f"models/team{team}_{name}.py", f"model_zoo/team{team}_{name}.pth"
    )
    source = _model_source(name, team, family, arguments, scale, arch)
    (folder / package.model_file).write_text(source, encoding="utf-8")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in deployed.state_dict().items()}
    torch.save(state, folder / package.weights_file)
    (folder / package.snippet_file).write_text(_snippet(team, name, team_id, arch), encoding="utf-8")
    _check_imports(folder / package.model_file)
    return package


def _check_imports(path: Path) -> None:
    """The model file imports ``torch`` (and its submodules) only."""
    others = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            others |= {a.name for a in node.names if a.name.split(".")[0] != "torch"}
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] != "torch"):
            others.add("." * node.level + (node.module or ""))
    if others:
        raise NtireError(f"{path.name} imports {', '.join(sorted(others))}; NTIRE model files may import only torch")


@torch.inference_mode()
def verify_package(
    package: NtirePackage, deployed: nn.Module, inputs: Sequence[Tensor], timeout: float = 600
) -> NtirePackage:
    """Run the package in a fresh ``python -I`` with the kit hidden and compare it with ``deployed`` on ``inputs``.

    Args:
        package: What :func:`write_package` wrote.
        deployed: The kit's deployed network (the reference).
        inputs: At least two inputs of different sizes, RGB in [0, 1] (e.g. the ONNX parity inputs).
        timeout: Seconds the check may take.

    Returns:
        ``package`` with ``checks`` (max abs error per input) and ``fvcore_flops`` (fvcore on the file's class at
        1x3x256x256, ``None`` without fvcore) filled in.

    Raises:
        NtireError: the file does not import, build or load strictly with the kit hidden, the kit was importable,
            or an output differs by more than :data:`NTIRE_TOLERANCE`.
    """
    outputs = [deployed(x).float() for x in inputs]
    with tempfile.TemporaryDirectory(prefix="ntire-check-") as tmp:
        data, result_file = Path(tmp) / "inputs.pt", Path(tmp) / "result.json"
        torch.save({"inputs": [x.float() for x in inputs], "outputs": outputs}, data)
        cmd = [sys.executable, "-I", "-B", str(CHECK_SCRIPT), str(package.folder), package.team, str(data)]
        cmd.append(str(result_file))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired as err:
            raise NtireError(f"the NTIRE package check did not finish within {timeout:g} s") from err
        if proc.returncode != 0 or not result_file.is_file():
            raise NtireError(
                f"the NTIRE package does not run with the kit hidden (import, build or strict load failed):\n"
                f"{proc.stderr.strip()[-2000:]}"
            )
        result = json.loads(result_file.read_text(encoding="utf-8"))
    if result["kit_importable"] or result["hidden_loaded"]:
        raise NtireError(f"the check could import the kit ({result['hidden_loaded']}); it proves nothing")
    package.checks = [{**c, "tolerance": NTIRE_TOLERANCE} for c in result["checks"]]
    package.fvcore_flops = result["fvcore_flops"]
    bad = [c for c in package.checks if not c["max_abs_error"] <= NTIRE_TOLERANCE]
    if bad:
        summary = ", ".join(f"{c['max_abs_error']:.2e} at {'x'.join(map(str, c['input_shape']))}" for c in bad)
        raise NtireError(f"the NTIRE file's output differs from the kit's deployed network: {summary}")
    return package

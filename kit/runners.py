"""Models as plain callables for evaluation and export: an ONNX file, a checkpoint, a teacher, bicubic.

Every runner maps an ``(N, C, H, W)`` float32 tensor, RGB in [0, 1], to the model's output as a float32 CPU
tensor, without gradients, so :func:`kit.evaluation.evaluate` and :func:`kit.infer.tiled.tiled_forward` treat
them alike::

    student = student_runner(opt)                    # experiments/<name>/models/net_g_latest.pth
    onnx = OnnxRunner("submissions/x4/model.onnx")   # onnxruntime, CPUExecutionProvider
    bicubic = BicubicRunner(4)                       # MATLAB imresize, as the bundled LR images were made
    sr = student(lq)                                 # (N, 3, 4H, 4W)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kit.checkpoint import CheckpointError, extract_state_dict, load_checkpoint
from kit.options import REPO_ROOT, resolve_path
from kit.pretrained import load_into

__all__ = [
    "BicubicRunner",
    "OnnxRunner",
    "TorchRunner",
    "default_checkpoint",
    "load_student",
    "student_runner",
    "teacher_runners",
    "teacher_target_runner",
]

BICUBIC_METHODS = ("matlab", "torch")


class TorchRunner:
    """A PyTorch network in eval mode as a callable: inputs moved to ``device``, outputs back to the CPU.

    Args:
        net: The network (put in ``eval()`` here).
        device: Where it runs, e.g. ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, net: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        return self.net(x.to(self.device, torch.float32)).float().cpu()


class OnnxRunner:
    """An onnxruntime session as a callable on ``(N, C, H, W)`` float32 tensors.

    Args:
        path: The ``.onnx`` file.
        providers: onnxruntime execution providers, in order of preference.
        threads: Intra-op threads (``None``: onnxruntime's default, one per physical core).
        session_options: ``onnxruntime.SessionOptions`` to start from (e.g. a graph optimisation level, or a path
            to write the optimised graph to); ``threads`` still applies.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: onnxruntime cannot load the file, or the model does not have exactly one input and output.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
        session_options=None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file '{self.path}' does not exist")
        so = session_options if session_options is not None else ort.SessionOptions()
        if threads is not None:
            so.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=list(providers))
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"onnxruntime cannot load '{self.path}': {str(err)[:300]}") from err
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"'{self.path}' has {len(inputs)} inputs and {len(outputs)} outputs; an image model has one of each"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32

    def __call__(self, x: Tensor) -> Tensor:
        feed = x.detach().cpu().numpy().astype(self.input_dtype, copy=False)
        (out,) = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(feed)})
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def probe_scale(self, size: int = 16) -> int:
        """Output/input size ratio, measured on a ``1×3×size×size`` input."""
        out = self(torch.zeros(1, 3, size, size))
        if out.dim() != 4 or out.shape[-1] % size or out.shape[-2] != out.shape[-1]:
            raise ValueError(f"'{self.path}': output {tuple(out.shape)} for a 1x3x{size}x{size} input has no scale")
        return out.shape[-1] // size


class BicubicRunner:
    """Bicubic upscaling by ``scale`` as a baseline "model".

    ``method="matlab"`` is BasicSR's MATLAB ``imresize`` (antialiased bicubic, a = −0.5), the function that made
    the bundled and DIV2K-style LR images; ``"torch"`` is ``F.interpolate(mode="bicubic", align_corners=False)``
    (a = −0.75, as OpenCV). Outputs are clamped to [0, 1]. At scale 1 both return the input unchanged.

    Args:
        scale: Upscaling factor.
        method: 'matlab' or 'torch'.
    """

    def __init__(self, scale: int, method: str = "matlab") -> None:
        if method not in BICUBIC_METHODS:
            raise ValueError(f"bicubic method must be one of {', '.join(BICUBIC_METHODS)}, got {method!r}")
        self.scale, self.method = int(scale), method

    def describe(self) -> str:
        """Which bicubic this is, for reports."""
        if self.method == "matlab":
            return "bicubic: MATLAB imresize (basicsr.utils.matlab_functions), antialiased, a=-0.5"
        return "bicubic: torch F.interpolate(mode='bicubic', align_corners=False), a=-0.75"

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        x = x.detach().float().cpu()
        if self.scale == 1:
            return x.clone()
        if self.method == "torch":
            return torch.nn.functional.interpolate(
                x, scale_factor=self.scale, mode="bicubic", align_corners=False
            ).clamp(0, 1)
        from basicsr.utils.matlab_functions import imresize

        outs = [imresize(img.permute(1, 2, 0).numpy(), self.scale) for img in x]  # HWC each
        return torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).float().clamp(0, 1)


def default_checkpoint(opt: Mapping[str, Any]) -> Path:
    """``experiments/<name>/models/net_g_latest.pth`` under the repo root (where training writes it)."""
    return REPO_ROOT / "experiments" / str(opt["name"]) / "models" / "net_g_latest.pth"


def load_student(
    opt: Mapping[str, Any], checkpoint: str | os.PathLike | None = None
) -> tuple[nn.Module, dict[str, str]]:
    """Build the options' student (``network_g``) alone and load its weights safely.

    Args:
        opt: Options dict (``name``, ``network_g``).
        checkpoint: ``.pth`` or ``.safetensors``; ``None``: :func:`default_checkpoint`. Relative paths are
            resolved against the repo root.

    Returns:
        The network (CPU, eval mode) and ``{"path", "param_key"}``: which file and which key was loaded
        (``params_ema`` when present, else ``params``, else the bare mapping).

    Raises:
        CheckpointError: missing, unreadable or unsafe file, or weights that do not fit ``network_g``.
    """
    from kit.registry import build_network

    if "network_g" not in opt:
        raise CheckpointError("options have no 'network_g' (the student to load)")
    path = Path(resolve_path(str(checkpoint))) if checkpoint is not None else default_checkpoint(opt)
    if not path.is_file():
        hint = "train it first (python train.py -opt ...) or pass --checkpoint" if checkpoint is None else ""
        raise CheckpointError(f"student checkpoint '{path}' does not exist{'; ' + hint if hint else ''}")
    net = build_network(dict(opt["network_g"]), "network_g")
    ckpt = load_checkpoint(path)
    key = next((k for k in ("params_ema", "params") if isinstance(ckpt.get(k), Mapping)), "(bare state dict)")
    state = extract_state_dict(ckpt, "params_ema")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"checkpoint '{path}' [{key}] holds NaN/Inf weights ({len(bad)} of {len(state)} tensors, e.g. {bad[0]}): "
            "the training diverged; export an earlier checkpoint (--checkpoint models/net_g_<iter>.pth)"
        )
    load_into(net, state, f"checkpoint '{path}' [{key}]")
    return net.eval(), {"path": str(path), "param_key": key}


def student_runner(
    opt: Mapping[str, Any], checkpoint: str | os.PathLike | None = None, device: str = "cpu"
) -> TorchRunner:
    """The options' student with its trained weights, as a :class:`TorchRunner`."""
    net, _ = load_student(opt, checkpoint)
    return TorchRunner(net, device)


def teacher_runners(opt: Mapping[str, Any], device: str = "cpu") -> dict[str, TorchRunner]:
    """The options' teacher(s), frozen, as runners: ``{"teacher": ...}`` or ``{"teacher:<name>": ...}``.

    Raises:
        ValueError: the options declare no teacher (``network_t`` or ``teachers:``).
    """
    from kit.teachers import teachers_from_options

    teachers = teachers_from_options(opt)
    if not teachers:
        raise ValueError("the options declare no teacher (network_t or teachers:); drop --teacher")
    if len(teachers) == 1:
        return {"teacher": TorchRunner(next(iter(teachers.values())).net, device)}
    return {f"teacher:{name}": TorchRunner(t.net, device) for name, t in teachers.items()}


class _TeacherTarget:
    """The weighted mean image of several teacher runners: the image ``DistillModel`` distils towards."""

    def __init__(self, runners: Mapping[str, TorchRunner], weights: Mapping[str, float]) -> None:
        self.runners, self.weights = dict(runners), dict(weights)

    def __call__(self, x: Tensor) -> Tensor:
        from kit.teachers import weighted_mean_output

        return weighted_mean_output({name: run(x) for name, run in self.runners.items()}, self.weights)


def teacher_target_runner(opt: Mapping[str, Any], device: str = "cpu") -> tuple[Any, str]:
    """The options' distillation target as one runner (the teacher, or the teachers' weighted mean) and its
    description for reports.

    Raises:
        ValueError: the options declare no teacher (``network_t`` or ``teachers:``).
    """
    from kit.teachers import teachers_from_options

    teachers = teachers_from_options(opt)
    if not teachers:
        raise ValueError("the options declare no teacher (network_t or teachers:); --against-teacher needs one")
    runners = {name: TorchRunner(t.net, device) for name, t in teachers.items()}
    described = "; ".join(t.info.describe() for t in teachers.values())
    if len(teachers) == 1:
        return next(iter(runners.values())), described
    weights = {name: t.weight for name, t in teachers.items()}
    return _TeacherTarget(runners, weights), f"weighted mean of {len(teachers)} teachers: {described}"

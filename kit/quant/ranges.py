"""Learned activation ranges (``ranges: learned``): scale and zero point trained by gradient, as LSQ.

PyTorch's own :class:`~torch.ao.quantization._learnable_fake_quantize._LearnableFakeQuantize` (uint8,
per-tensor affine) replaces the moving-average min/max fake quantiser on the activations; the weights stay
per-channel symmetric int8 over their current min/max. Its min/max observer sets the scale and zero point on the
first training batch (:class:`~kit.quant.QATStudent` then calls :func:`freeze_learned_ranges`), gradients move
them afterwards (``scale`` and ``zero_point`` are parameters of the network, so the optimiser trains them).
``torch.onnx`` has no symbolic for the learnable kernel: :func:`fixed_quantisers` turns each into a standard
``FakeQuantize`` with the same scale and (rounded) zero point before export.

Esser et al., "Learned Step Size Quantization", ICLR 2020; Bhalgat et al., "LSQ+", CVPR-W 2020 (the learned
offset).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RANGES", "fixed_quantisers", "freeze_learned_ranges", "learned_activation", "uint8_activation"]

RANGES = ("minmax", "learned")


def uint8_activation() -> dict:
    """onnxruntime's activation scheme as fake-quantiser arguments: uint8, per tensor, min/max observed."""
    from torch.ao.quantization import MovingAverageMinMaxObserver

    return {
        "observer": MovingAverageMinMaxObserver,
        "quant_min": 0,
        "quant_max": 255,
        "dtype": torch.quint8,
        "qscheme": torch.per_tensor_affine,
        "reduce_range": False,
    }


def learned_activation():
    """The activation fake quantiser (a ``with_args`` factory) with learned uint8 per-tensor scale/zero point."""
    from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize

    return _LearnableFakeQuantize.with_args(
        **uint8_activation(),
        use_grad_scaling=True,  # LSQ's gradient scale 1 / sqrt(numel · 255)
    )


def _learnable(net: nn.Module) -> list[tuple[str, nn.Module]]:
    from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize

    return [(name, m) for name, m in net.named_modules() if isinstance(m, _LearnableFakeQuantize)]


def freeze_learned_ranges(net: nn.Module) -> int:
    """Turn the observer of every learned quantiser in ``net`` off (gradients train its range); returns how many."""
    found = _learnable(net)
    for _, module in found:
        module.toggle_observer_update(False)
    return len(found)


def fixed_quantisers(net: nn.Module) -> int:
    """Replace, in place, each learned quantiser by a ``FakeQuantize`` with its scale and zero point; how many.

    The replacement computes what the learned one computes in eval mode (its zero point rounded and clamped as
    the learnable kernel does) and exports as ``QuantizeLinear``/``DequantizeLinear``; its observer is off.
    """
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

    found = _learnable(net)
    for name, module in found:
        scale, zero_point = module.calculate_qparams()
        fixed = FakeQuantize(
            observer=MovingAverageMinMaxObserver,
            quant_min=module.quant_min,
            quant_max=module.quant_max,
            dtype=module.dtype,
            qscheme=module.qscheme,
            reduce_range=False,
        ).to(scale.device)
        fixed.scale.copy_(scale)
        fixed.zero_point.copy_(zero_point.to(fixed.zero_point.dtype))
        fixed.disable_observer()
        fixed.fake_quant_enabled.copy_(module.fake_quant_enabled)
        parent, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent), attr, fixed)
    return len(found)

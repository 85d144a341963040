"""QATStudent: a trained network fine-tuned under onnxruntime's INT8 quantiser (quantisation-aware training).

The fp32 network (``network`` + ``weights``) is fused to its deployed form and prepared with
:func:`kit.quant.scheme.prepare_qat`; training then sees exactly the int8/uint8 rounding the exported QDQ model
runs, with straight-through gradients. Distilled from its own fp32 self: put the same network and weights under
``network_t`` (``options/qat_span.yml``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import Tensor, nn

from kit.archs.deploy import deploy_network
from kit.quant.ranges import freeze_learned_ranges
from kit.quant.scheme import prepare_qat, set_fake_quant, set_observing
from kit.quant.split import join_split_weights, split_convolutions

__all__ = ["QATStudent"]


@ARCH_REGISTRY.register()
class QATStudent(nn.Module):
    """A student network under simulated INT8 (onnxruntime's scheme), for quantisation-aware fine-tuning.

    ```yaml
    network_g:
      type: QATStudent
      network: {type: SPANStudent, num_feat: 48, num_block: 6, scale: 4}   # the fp32 network
      weights: experiments/pretrained/spanx4_ch48.safetensors             # its trained weights (params_ema first)
      keep_float: [image]                                                 # as export.py --int8-keep-float
      split_concat: true                  # conv(cat[a, b]) as conv_a(a) + conv_b(b): a quantiser per part
      ranges: minmax                      # activation ranges: minmax (observed) or learned (LSQ)
    network_t: {type: SPANStudent, num_feat: 48, num_block: 6, scale: 4}  # the same fp32 network: the teacher
    ```

    Module paths for feature pairs are the deployed network's under ``quantised.``, e.g.
    ``quantised.conv_cat`` (the convolution's output before its activation quantiser; when split, the sum of
    its parts' quantised outputs). The observers follow
    the data in ``train()`` and are frozen in ``eval()`` (validation never moves a range); before the first
    training forward has set them, ``eval()`` runs the fp32 network. :meth:`fuse` gives the
    fine-tuned fp32 network for ``model.onnx``; ``export.py --int8`` writes this network's own QDQ model
    (:mod:`kit.quant.qdq`). Jacob et al., CVPR 2018.

    Args:
        network: The fp32 network's options (any kit student; fused with ``fuse()`` when it has one).
        weights: Its trained weights (``.pth`` with ``params_ema``/``params``, or ``.safetensors``); ``None``:
            as built (tests, or weights loaded later from a QAT checkpoint).
        keep_float: Parts left in float, of ``image``, ``first``, ``last``, or convolution paths of the deployed
            network such as ``conv_cat`` (:mod:`kit.quant.scheme`).
        split_concat: Split each quantised convolution reading a channel concatenation (SPAN's ``conv_cat``)
            into one convolution per part, summed: the same function, but each part gets its own input
            quantiser (:mod:`kit.quant.split`; parts ``conv_cat_part0`` …, the sum at ``conv_cat``).
            Checkpoints of one setting do not load into the other.
        ranges: Activation ranges: ``minmax`` (a moving-average min/max of the training data) or ``learned``
            (set by the min/max of the first training batch, then trained by gradient as LSQ, Esser et al.,
            ICLR 2020: :mod:`kit.quant.ranges`). Weights: per-channel min/max in both.
    """

    refuses_ema = True  # the ranges are buffers: an EMA copy (KitSRModel) would keep its initial ones

    def __init__(
        self,
        network: Mapping[str, Any],
        weights: str | None = None,
        keep_float: Sequence[str] = ("image",),
        split_concat: bool = True,
        ranges: str = "minmax",
    ) -> None:
        super().__init__()
        from kit.options import resolve_path
        from kit.pretrained import load_weights
        from kit.registry import build_network

        net = build_network(dict(network), "network_g:network")
        if weights is not None:
            load_weights(net, resolve_path(str(weights)), "params_ema")
        deployed = deploy_network(net)
        self.keep_float = tuple(keep_float)
        self.in_channels = int(dict(network).get("num_in_ch", 3))
        self.ranges = ranges
        self.quantised = prepare_qat(deployed, self.keep_float, self.in_channels, split_concat, ranges)
        self.register_buffer("observed", torch.zeros((), dtype=torch.uint8))  # 1 once a training forward set ranges
        self.__dict__["_template"] = deployed  # the deployed fp32 layout, outside the module tree (no weights saved)

    def forward(self, x: Tensor) -> Tensor:
        out = self.quantised(x)
        if self.training and not self.observed:
            self.observed.fill_(1)
            freeze_learned_ranges(self.quantised)  # learned ranges: the first batch's min/max starts them
        return out

    def train(self, mode: bool = True) -> QATStudent:
        """Train mode: observers on (learned ranges: until set). Eval: ranges frozen; fp32 until a training step."""
        super().train(mode)
        set_observing(self.quantised, mode)
        if self.observed:
            freeze_learned_ranges(self.quantised)  # trained by gradient from now on
        set_fake_quant(self.quantised, mode or bool(self.observed))
        return self

    def fp32_network(self) -> nn.Module:
        """The deployed fp32 network with the fine-tuned weights (eval mode), no quantiser."""
        fused = copy.deepcopy(self.__dict__["_template"])
        state = join_split_weights(self.quantised.state_dict(), split_convolutions(self.quantised))
        wanted = fused.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise KeyError(f"QATStudent: the prepared graph lacks {missing[:4]} of the fp32 network's weights")
        fused.load_state_dict({k: state[k] for k in wanted})
        return fused.eval()

    def fuse(self) -> nn.Module:
        """The fp32 network to export as ``model.onnx``; it keeps a reference to this QAT network as ``qat_source``.

        The reference is a plain attribute (not a submodule): it is not counted, saved or exported.
        """
        fused = self.fp32_network()
        fused.__dict__["qat_source"] = self
        return fused

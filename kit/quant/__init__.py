"""Quantisation-aware fine-tuning for INT8: onnxruntime's scheme simulated with ``torch.ao.quantization``.

- :mod:`kit.quant.scheme`: the qconfig (int8 per-channel symmetric weights, uint8 per-tensor activations), which
  convolutions, ``prepare_qat_fx``.
- :class:`QATStudent` (:mod:`kit.quant.student`): the registered ``network_g`` type that fine-tunes a trained
  network under that quantiser, distilled from its fp32 self.
- :mod:`kit.quant.split`: ``conv(cat[a, b])`` rewritten as ``conv_a(a) + conv_b(b)`` (a quantiser per part).
- :mod:`kit.quant.ranges`: learned activation ranges (LSQ) instead of min/max.
- :mod:`kit.quant.qdq`: the QAT network's own QDQ ONNX model, and how closely onnxruntime runs it as simulated.
"""

from __future__ import annotations

from kit.quant.ranges import RANGES
from kit.quant.scheme import QAT_FLOAT_PARTS, end_convolutions, ort_qconfig, prepare_qat, set_observing
from kit.quant.split import split_concat_convolutions, split_convolutions
from kit.quant.student import QATStudent

__all__ = [
    "QAT_FLOAT_PARTS",
    "RANGES",
    "QATStudent",
    "end_convolutions",
    "ort_qconfig",
    "prepare_qat",
    "set_observing",
    "split_concat_convolutions",
    "split_convolutions",
]

"""Runtime as the challenge measures it where possible: CUDA events on a GPU (NTIRE ESR), onnxruntime CPU otherwise.

NTIRE ESR's ``test_demo.py`` runs the PyTorch model on each validation image with ``cudnn.benchmark`` off and
records ``torch.cuda.Event(enable_timing=True)`` before and after the whole-image forward, then reports the mean
over the images. :func:`runtime_record` does the same on the deployed network when CUDA is available (one
untimed warm-up forward first); without a GPU it reports the onnxruntime CPU latency of the submitted ONNX file
(median of the timed runs at the reference input) and says so in ``method``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["cuda_event_runtime_ms", "runtime_record"]


@torch.inference_mode()
def cuda_event_runtime_ms(net: nn.Module, images: Iterable[np.ndarray], device: str = "cuda") -> list[float]:
    """Milliseconds of one forward per image (RGB float32 HWC in [0, 1]), timed by CUDA events as NTIRE ESR does."""
    model = copy.deepcopy(net).float().to(device).eval()
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    times = []
    try:
        for k, img in enumerate(images):
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float().to(device)
            if k == 0:
                model(x)  # warm-up: CUDA context, kernels
                torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize()
            times.append(float(start.elapsed_time(end)))
    finally:
        torch.backends.cudnn.benchmark = benchmark
    return times


def runtime_record(
    net: nn.Module, lq_images: Iterable[np.ndarray], onnx_cpu_ms: float, onnx_input: list[int]
) -> dict[str, Any]:
    """The manifest's ``runtime``: CUDA events over ``lq_images`` with a GPU, else the onnxruntime CPU time."""
    if torch.cuda.is_available():
        times = cuda_event_runtime_ms(net, lq_images)
        return {
            "method": "cuda_events",
            "ms": float(np.mean(times)),
            "per_image_ms": times,
            "how": "PyTorch deployed network, torch.cuda.Event around each whole-image forward, cudnn.benchmark off, "
            f"mean over {len(times)} validation images after one warm-up forward (NTIRE ESR test_demo.py)",
            "device": torch.cuda.get_device_name(0),
        }
    return {
        "method": "onnxruntime_cpu",
        "ms": onnx_cpu_ms,
        "how": f"no GPU here: onnxruntime CPUExecutionProvider, median latency of model.onnx at {onnx_input}",
        "device": "cpu",
    }

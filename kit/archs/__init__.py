"""Student architectures (each under the 5M-parameter cap by default), registered in BasicSR's ARCH_REGISTRY.

- :class:`RLFNStudent` — residual local feature blocks + ESA, for super-resolution (×1–×4).
- :class:`RepSRStudent` — ECBSR-style re-parameterisable plain-conv network, for super-resolution (×1–×4).
- :class:`NAFStudent` — small NAFNet U-Net, for same-size restoration (denoise, deblur, JPEG).
- :class:`SPANStudent` — SPAN (NTIRE 2024 Efficient SR winner), re-parameterisable convs; loads the official weights.

:func:`deploy_network` gives the network to export (branches fused); :func:`count_params` its size.
"""

from __future__ import annotations

from kit.archs.deploy import count_params, deploy_network
from kit.archs.naf_student import NAFStudent
from kit.archs.rep_student import RepSRStudent
from kit.archs.rlfn_student import RLFNStudent
from kit.archs.span_student import SPANStudent

__all__ = ["NAFStudent", "RLFNStudent", "RepSRStudent", "SPANStudent", "count_params", "deploy_network"]

"""``AutoTeacher``: read a teacher's architecture, scale and channels from its checkpoint (spandrel, offline).

Spandrel (``spandrel.MAIN_REGISTRY``) detects ~40 restoration architectures from the keys and shapes of a
state dict: among BasicSR's, RRDBNet (as ``ESRGAN``), SRVGGNetCompact (as ``Compact``) and SwinIR; also HAT,
NAFNet, DAT, SPAN, ... The network returned is spandrel's own module, so feature paths are that
architecture's (spandrel's ESRGAN uses the old ``model.1.sub.0.RDB1...`` names, not BasicSR's ``body.0.rdb1``):
list them with ``kit-inspect --checkpoint file.pth``.

``AutoTeacher`` is registered in BasicSR's ``ARCH_REGISTRY`` only so that building it by mistake through
``build_network`` fails with an explanation: it has nothing to build from without a checkpoint. Teachers are
loaded by :func:`kit.teachers.load_teacher`, which handles this type before the registry.

Spandrel assumes fixed values for hyper-parameters it cannot read from the weights (e.g. ESRGAN's
``num_grow_ch`` 32): a checkpoint trained with other values is refused with a hint to declare the architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kit.checkpoint import CheckpointError
from kit.teachers.errors import TeacherError

AUTO_TYPE = "AutoTeacher"

# spandrel architecture id -> the BasicSR type that builds the same network with BasicSR's key names
SPANDREL_TO_BASICSR = {"ESRGAN": "RRDBNet", "Compact": "SRVGGNetCompact", "SwinIR": "SwinIR"}


@ARCH_REGISTRY.register()
class AutoTeacher(nn.Module):
    """Teacher whose architecture is detected from its checkpoint by spandrel.

    Not constructible: use it as ``network_t`` (or a ``teachers:`` entry's ``network``) and let
    :func:`kit.teachers.load_teacher` read the checkpoint. It takes no other keys: the teacher's scale is
    checked against the options' top-level ``scale``.

    ```yaml
    scale: 4
    network_t: {type: AutoTeacher}
    path:
      pretrain_network_t: experiments/pretrained/teacher.safetensors
    ```
    """

    def __init__(self) -> None:
        raise TypeError(
            f"{AUTO_TYPE} cannot be built without its checkpoint; load teachers with "
            "kit.teachers.load_teacher(network_opt, checkpoint) (DistillModel does this for network_t/teachers)"
        )


def check_auto_options(network_opt: Mapping[str, Any]) -> None:
    """Refuse keys other than ``type``: everything else comes from the checkpoint."""
    extra = sorted(k for k in network_opt if k != "type")
    if extra:
        raise TeacherError(
            f"{AUTO_TYPE} takes no other keys (got {', '.join(extra)}): architecture, scale and channels come "
            "from the checkpoint, and the scale is checked against the options' top-level 'scale'. Declare the "
            "architecture instead ({type: RRDBNet, ...}) to set its arguments."
        )


def detect_from_state(state: Mapping[str, torch.Tensor], source: str) -> tuple[nn.Module, Any]:
    """Detect and build the network a state dict belongs to.

    Args:
        state: the weights (already extracted from ``params_ema``/``params``).
        source: how to name the weights in errors, e.g. ``"checkpoint 'x.pth'"``.

    Returns:
        Spandrel's network with the weights loaded (strictly), and its ``ModelDescriptor``
        (``architecture.id``, ``scale``, ``input_channels``, ``output_channels``, ``tags``).

    Raises:
        CheckpointError: spandrel does not know the architecture, or cannot build it from these weights.
    """
    from spandrel import MAIN_REGISTRY, ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader(device="cpu", registry=MAIN_REGISTRY).load_from_state_dict(dict(state))
    except UnsupportedModelError as err:
        keys = list(state)
        raise CheckpointError(
            f"{source}: spandrel does not recognise this architecture ({len(keys)} tensors, e.g. "
            f"{', '.join(keys[:3])}). Declare it instead of {AUTO_TYPE}: network_t: {{type: <arch>, ...}} with "
            "the arguments it was trained with."
        ) from err
    except Exception as err:  # detected, but spandrel's builder or load_state_dict failed
        arch = detected_id(state) or "an architecture"
        first = str(err).strip().splitlines()
        raise CheckpointError(
            f"{source}: spandrel recognised {arch} but could not build it from these weights "
            f"({type(err).__name__}: {' '.join(first[:2])[:300]}). Spandrel assumes fixed values for some "
            f"arguments (ESRGAN: num_grow_ch 32); declare the architecture instead of {AUTO_TYPE}"
            + (f" (type: {SPANDREL_TO_BASICSR[arch]}, ...)." if arch in SPANDREL_TO_BASICSR else ".")
        ) from err
    return descriptor.model, descriptor


def detected_id(state: Mapping[str, torch.Tensor]) -> str | None:
    """The id of the architecture spandrel detects in ``state`` (``ESRGAN``, ``SPAN``, ...), or None."""
    from spandrel import MAIN_REGISTRY

    for support in MAIN_REGISTRY.architectures("detection"):
        try:
            if support.detect(dict(state)):
                return str(support.architecture.id)
        except Exception:  # a detector that chokes on foreign keys means "not this one"
            continue
    return None


def looks_like(state: Mapping[str, torch.Tensor], declared: str) -> str:
    """A sentence saying what spandrel reads the weights as, to append to a key-mismatch error."""
    arch = detected_id(state)
    if arch is None:
        return "Spandrel does not recognise these weights either: check that the file is the teacher's."
    basicsr_type = SPANDREL_TO_BASICSR.get(arch)
    try:
        _, descriptor = detect_from_state(state, "")
        what = f"{arch} ×{descriptor.scale}" + (f" ({', '.join(descriptor.tags)})" if descriptor.tags else "")
    except CheckpointError:
        what = arch
    if basicsr_type == declared:
        return (
            f"Spandrel reads it as {what}: the same architecture with other arguments. Fix the network options "
            f"or use {{type: {AUTO_TYPE}}}."
        )
    also = f" or declare type: {basicsr_type} with its arguments" if basicsr_type else ""
    article = "an" if what[0] in "AEIOU" else "a"
    return f"It looks like {article} {what} checkpoint (spandrel), not {declared}: use {{type: {AUTO_TYPE}}}{also}."

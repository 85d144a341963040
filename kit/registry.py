"""The one ``type:`` rule: a mapping with ``type:`` builds the registered class with the other keys as arguments.

Every builder of the kit goes through here — students and teachers (``ARCH_REGISTRY``), losses, connectors,
degradations, recipes' losses, validation metrics, models — so a typo fails before training starts with the
options key, the class and the closest name or argument, never with a ``TypeError`` three frames down::

    from kit.registry import build_loss, build_network, check_spec

    net = build_network(opt["network_g"], "network_g")            # check, then build
    check_spec(ARCH_REGISTRY, opt["network_t"], "network_t")      # check only (nothing is built)

No name is rewritten behind the user's back: BasicSR registers a few classes under a suffix
(``SRVGGNetCompact`` as ``SRVGGNetCompact_basicsr``); such a lookup is accepted, as BasicSR's own
``Registry.get`` accepts it, and the log says which class was used.
"""

from __future__ import annotations

import difflib
import inspect
from copy import deepcopy
from typing import Any

import torch
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from kit.schema import short

BASICSR_SUFFIX = "basicsr"


class OptionsKeyError(ValueError):
    """A ``type:`` mapping that names no registered class or passes arguments the class does not take."""


def check_arguments(cls: Any, args: dict[str, Any], where: str) -> None:
    """Raise when ``args`` holds a key the constructor of ``cls`` does not name (or misses a required one).

    A ``**kwargs`` catch-all does not make a key acceptable: BasicSR's SwinIR swallows unknown keys there,
    so a typo like ``upscal`` would otherwise build a network with the default value, silently.
    """
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    params = [p for p in sig.parameters.values() if p.name != "self"]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in args:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise OptionsKeyError(
                f"{where}: {cls.__name__} has no argument '{key}'{hint}; it accepts: {', '.join(names)}"
            )
    missing = [p.name for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    missing = [m for m in missing if m not in args]
    if missing:
        raise OptionsKeyError(f"{where}: {cls.__name__} needs {', '.join(missing)}")


def registered_name(registry: Any, type_name: Any, where: str) -> str:
    """The name ``type_name`` is registered under (itself, or with BasicSR's suffix, logged); else one error."""
    if not isinstance(type_name, str):
        raise OptionsKeyError(f"{where}: 'type' must be a class name, got {type_name!r}")
    names = list(registry.keys())
    if type_name in names:
        return type_name
    suffixed = f"{type_name}_{BASICSR_SUFFIX}"
    if suffixed in names:
        get_root_logger().info(f"{where}: type '{type_name}' is BasicSR's class registered as '{suffixed}'")
        return suffixed
    close = difflib.get_close_matches(type_name, names, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise OptionsKeyError(f"{where}: unknown type '{type_name}' (no such {registry._name} is registered){hint}")


def lookup(registry: Any, type_name: Any, where: str) -> Any:
    """The registered class for ``type_name``, or one error naming the key and the closest names."""
    return registry.get(registered_name(registry, type_name, where))


def check_spec(registry: Any, spec: Any, where: str) -> Any:
    """Validate a ``{type: ..., **args}`` mapping against a registry without building it; return the class."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise OptionsKeyError(f"{where}: expected a mapping with 'type:', got {short(spec)}")
    cls = lookup(registry, spec["type"], where)
    check_arguments(cls, {k: v for k, v in spec.items() if k != "type"}, where)
    return cls


def build_from_registry(registry: Any, spec: dict[str, Any], where: str) -> Any:
    """Check then build ``registry[spec.type](**rest)`` (the arguments are copied, never consumed)."""
    cls = check_spec(registry, spec, where)
    return cls(**deepcopy({k: v for k, v in spec.items() if k != "type"}))


def build_network(spec: dict[str, Any], where: str) -> torch.nn.Module:
    """A network of ``ARCH_REGISTRY`` (students, declared teachers), checked first."""
    net = build_from_registry(ARCH_REGISTRY, spec, where)
    get_root_logger().info(f"Network [{net.__class__.__name__}] is created.")
    return net


def build_loss(spec: dict[str, Any], where: str) -> torch.nn.Module:
    """A loss of ``LOSS_REGISTRY`` (pixel loss, output-KD, feature pairs, recipes), checked first."""
    loss = build_from_registry(LOSS_REGISTRY, spec, where)
    get_root_logger().info(f"Loss [{loss.__class__.__name__}] is created.")
    return loss


def build_model(opt: dict[str, Any], **handed_on: Any) -> Any:
    """The ``model_type`` of ``MODEL_REGISTRY`` built from the options (``handed_on``: e.g. loaded teachers)."""
    cls = lookup(MODEL_REGISTRY, opt.get("model_type"), "model_type")
    model = cls(opt, **handed_on)
    get_root_logger().info(f"Model [{model.__class__.__name__}] is created.")
    return model

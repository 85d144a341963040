"""The one YAML rule, with errors that name the key: a mapping with ``type:`` builds the registered class.

``build_from_registry(REGISTRY, {"type": "X", **args}, "network_g")`` checks the name and the
constructor's arguments before calling it, so a typo fails with the options key, the class and the
accepted arguments — not with a TypeError three frames down.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any


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


def lookup(registry: Any, type_name: Any, where: str) -> Any:
    """The registered class for ``type_name``, or one error naming the key and the closest names."""
    if not isinstance(type_name, str):
        raise OptionsKeyError(f"{where}: 'type' must be a class name, got {type_name!r}")
    names = list(registry.keys())
    if f"{type_name}_basicsr" in names:  # BasicSR registers some classes with a suffix
        type_name = f"{type_name}_basicsr"
    if type_name not in names:
        close = difflib.get_close_matches(type_name, names, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise OptionsKeyError(f"{where}: unknown type '{type_name}' (no such {registry._name} is registered){hint}")
    return registry.get(type_name)


def check_spec(registry: Any, spec: Any, where: str) -> Any:
    """Validate a ``{type: ..., **args}`` mapping against a registry; return the class."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise OptionsKeyError(f"{where}: expected a mapping with 'type:', got {spec!r}")
    cls = lookup(registry, spec["type"], where)
    check_arguments(cls, {k: v for k, v in spec.items() if k != "type"}, where)
    return cls


def build_from_registry(registry: Any, spec: dict[str, Any], where: str) -> Any:
    """Check then build ``registry[spec.type](**rest)``."""
    cls = check_spec(registry, spec, where)
    return cls(**{k: v for k, v in spec.items() if k != "type"})

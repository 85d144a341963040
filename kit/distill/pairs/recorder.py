"""Record intermediate features of a model by module path, with forward hooks.

A *spec* names one module of ``model.named_modules()`` and, for a module that runs several times in one
forward, which call: ``"body.7"`` or ``"lrelu#2"`` (the third call; mmrazor's ``record_idx``). BasicSR's
RRDBNet, for instance, reuses one ``lrelu`` for its three upsampling stages.

Example::

    rec = FeatureRecorder(teacher, {"mid": "body.22", "up": "lrelu#0"}, role="teacher")
    with rec, torch.inference_mode():
        teacher(lq)
        feat = rec.get("mid")  # (N, C, H, W)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FeatureRecorder", "closest_paths", "module_paths", "parse_spec", "record_shapes"]

_SPEC = re.compile(r"^(?P<path>[^#]*)(?:#(?P<index>.*))?$")
_SOURCES = ("output", "input")


def _bare(model: nn.Module) -> nn.Module:
    """The wrapped module of DataParallel/DistributedDataParallel, so paths need no ``module.`` prefix."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    return model


def module_paths(model: nn.Module) -> list[str]:
    """All dotted module paths of ``model`` (``named_modules()`` order, the root itself left out).

    A DataParallel/DistributedDataParallel wrapper is looked through.
    """
    return [name for name, _ in _bare(model).named_modules() if name]


def closest_paths(model: nn.Module, path: str, n: int = 3) -> list[str]:
    """The ``n`` module paths of ``model`` closest to ``path`` (difflib ratio), best first."""
    return difflib.get_close_matches(path, module_paths(model), n=n, cutoff=0.5)


def parse_spec(spec: str) -> tuple[str, int | None]:
    """Split ``"path#k"`` into ``(path, k)``; ``"path"`` gives ``(path, None)``.

    Raises:
        ValueError: if ``spec`` is not a string or ``k`` is not a non-negative integer.
    """
    if not isinstance(spec, str):
        raise ValueError(f"a feature spec is a string 'path' or 'path#k', got {spec!r}")
    match = _SPEC.match(spec.strip())
    path, index = match["path"], match["index"]
    if index is None:
        return path, None
    if not index.isdigit():
        raise ValueError(f"feature spec {spec!r}: the call index after '#' must be an integer >= 0, like 'lrelu#1'")
    return path, int(index)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, Tensor):
                return item
    return None


Shape = tuple[int, ...] | str  # a tensor's shape, or the type name of a value that holds no tensor


def describe_value(value: Any) -> Shape:
    """The shape of what a recorder would record from ``value`` (its first tensor), else its type name."""
    tensor = _first_tensor(value)
    return tuple(tensor.shape) if tensor is not None else type(value).__name__


def record_shapes(model: nn.Module, x: Tensor) -> tuple[dict[str, list[Shape]], Shape]:
    """Run ``x`` through ``model`` (no grad) and record every module's output shape, per call.

    Returns:
        ``{path: [shape of call 0, shape of call 1, ...]}`` for every path of :func:`module_paths` (an empty
        list for a module that did not run) and the model's output shape: the call indices a spec
        ``path#k`` selects, as :class:`FeatureRecorder` counts them.
    """
    model = _bare(model)
    calls: dict[str, list[Shape]] = {name: [] for name in module_paths(model)}
    modules = dict(model.named_modules())
    hooks = [(modules[n], lambda _m, _a, out, sink=sink: sink.append(describe_value(out))) for n, sink in calls.items()]
    return calls, describe_value(forward_with_hooks(model, x, hooks))


def forward_with_hooks(model: nn.Module, x: Tensor, hooks: Iterable[tuple[nn.Module, Callable]]) -> Any:
    """One forward of ``x`` without gradients, with each ``(module, forward hook)`` attached; removed afterwards."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()


class FeatureRecorder:
    """Records the output (or input) of modules of a model by path, per forward call.

    Each entry of ``specs`` maps a name of your choice to a spec ``"path"`` or ``"path#k"``: the
    module at ``path`` in ``model.named_modules()`` and, if it runs several times per forward, its k-th
    call (0-based). Paths are checked when the recorder is built; call counts when you :meth:`get`.

    What is recorded:

    - ``source="output"``: the module's return value; ``source="input"``: its first positional argument.
      When that value is a tuple or list, its first tensor element is recorded.
    - With ``clone=True`` (default) a copy, so an in-place op later in the forward (e.g. the
      ``LeakyReLU(inplace=True)`` after a conv) cannot change it. The clone is differentiable, so a
      student feature still carries its gradient; under ``torch.inference_mode()`` (the teacher) it is
      an inference tensor, which the kit's losses accept as their constant target.
    - Only the requested call of each module is kept; the others are only counted.

    Lifecycle: :meth:`attach` registers the hooks, :meth:`remove` removes them; ``with recorder:`` does
    both. Buffers are cleared at the start of every forward of ``model`` (``auto_clear``), so
    :meth:`get` always refers to the latest forward; call :meth:`clear` yourself with
    ``auto_clear=False`` (e.g. when you run submodules without the root's forward).

    Args:
        model: the network; a DataParallel/DistributedDataParallel wrapper is looked through, so paths
            are those of the bare model.
        specs: ``{name: "path"}`` or ``{name: "path#k"}``.
        source: ``"output"`` or ``"input"`` of the modules.
        clone: store a copy of the tensor instead of a reference.
        role: the word used in error messages (``"student"``, ``"teacher"``).
        auto_clear: clear buffers at the start of each forward of ``model``.

    Raises:
        ValueError: if a spec is malformed, a path does not exist (the message lists the closest
            paths), or ``source`` is unknown.
    """

    def __init__(
        self,
        model: nn.Module,
        specs: dict[str, str],
        source: str = "output",
        clone: bool = True,
        role: str = "model",
        auto_clear: bool = True,
    ) -> None:
        if source not in _SOURCES:
            raise ValueError(f"FeatureRecorder source must be one of {_SOURCES}, got {source!r}")
        self.model = _bare(model)
        self.source = source
        self.clone = clone
        self.role = role
        self.auto_clear = auto_clear
        modules = dict(self.model.named_modules())
        self._specs: dict[str, tuple[str, int | None]] = {}
        for name, spec in specs.items():
            path, index = parse_spec(spec)
            if path not in modules:
                close = closest_paths(self.model, path)
                listing = "list them with kit.distill.pairs.module_paths(model)"
                hint = f"closest: {', '.join(close)}" if close else listing
                raise ValueError(f"{role} path '{path}' not found; {hint}")
            self._specs[name] = (path, index)
        # Per module path: the call indices to keep (None = the spec gave no index: keep call 0).
        self._wanted: dict[str, set[int]] = {}
        for path, index in self._specs.values():
            self._wanted.setdefault(path, set()).add(0 if index is None else index)
        self._modules = {path: modules[path] for path in self._wanted}
        self._counts: dict[str, int] = {}
        self._buffers: dict[tuple[str, int], Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._handles)

    def attach(self) -> FeatureRecorder:
        """Register the forward hooks (no-op if already attached) and clear the buffers."""
        if self.attached:
            return self
        self.clear()
        if self.auto_clear:
            self._handles.append(self.model.register_forward_pre_hook(lambda *_: self.clear()))
        for path, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._make_hook(path)))
        return self

    def remove(self) -> None:
        """Remove every hook this recorder registered; recorded tensors stay readable until :meth:`clear`."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> FeatureRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def clear(self) -> None:
        """Forget recorded tensors and call counts."""
        self._counts = {path: 0 for path in self._modules}
        self._buffers = {}

    def _make_hook(self, path: str) -> Callable[..., None]:
        wanted = self._wanted[path]

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            call = self._counts[path]
            self._counts[path] = call + 1
            if call not in wanted:
                return
            value = output if self.source == "output" else args
            tensor = _first_tensor(value)
            if tensor is None:
                raise TypeError(
                    f"{self.role} path '{path}' {self.source} is {type(value).__name__}, not a tensor or a "
                    "tuple/list holding one; record a module that returns a tensor"
                )
            self._buffers[(path, call)] = tensor.clone() if self.clone else tensor

        return hook

    # -- reading ----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The names of the specs, in the order given."""
        return list(self._specs)

    def _spec(self, name: str) -> tuple[str, int | None]:
        if name not in self._specs:
            raise KeyError(f"{self.role} recorder has no feature named '{name}'; it has: {', '.join(self._specs)}")
        return self._specs[name]

    def calls(self, name: str) -> int:
        """How many times the module of feature ``name`` ran since the last clear."""
        path, _ = self._spec(name)
        return self._counts.get(path, 0)

    def get(self, name: str) -> Tensor:
        """The tensor recorded for feature ``name`` in the latest forward.

        Raises:
            KeyError: if ``name`` is not one of the specs.
            ValueError: if the module did not run, ran several times and the spec has no ``#k``, or
                ``#k`` is beyond the number of calls.
        """
        path, index = self._spec(name)
        count = self._counts.get(path, 0)
        if count == 0:
            state = "" if self.attached else " (the recorder is not attached: call attach() or use 'with recorder:')"
            raise ValueError(
                f"{self.role} path '{path}' did not run in the last forward{state}; "
                "pick a module that forward() calls (not just one that is defined)"
            )
        if index is None and count > 1:
            raise ValueError(
                f"{self.role} path '{path}' ran {count} times in one forward; write '{path}#k' with k in "
                f"0..{count - 1} to pick one call"
            )
        if index is not None and index >= count:
            raise ValueError(
                f"{self.role} spec '{path}#{index}' asks for call {index} but '{path}' ran {count} "
                f"time{'s' if count > 1 else ''} in one forward; use k in 0..{count - 1}"
            )
        return self._buffers[(path, 0 if index is None else index)]

    def get_all(self) -> dict[str, Tensor]:
        """``{name: tensor}`` for every spec (same checks as :meth:`get`)."""
        return {name: self.get(name) for name in self._specs}

    def __repr__(self) -> str:
        specs = ", ".join(f"{n}={p}" + ("" if k is None else f"#{k}") for n, (p, k) in self._specs.items())
        return f"FeatureRecorder({self.role}: {specs}; source={self.source}, attached={self.attached})"

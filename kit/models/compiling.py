"""``train.compile``: ``torch.compile`` of the student, the teachers and the connectors, weights left plain.

.. code-block:: yaml

    train:
      compile: true              # default false (eager)
      compile_mode: default      # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs

Each network is compiled *in place* (``nn.Module.compile``): the module object, its ``named_modules()``,
``state_dict()`` keys and parameters stay those of the eager network, so EMA, the optimizer, DDP (which wraps
the module, not a copy), checkpoints, resume states and exports hold plain names (no ``_orig_mod.`` prefix),
and the recorder's forward hooks are traced into the compiled graph. Only the training steps run compiled:
validation, the dry shape check of the feature pairs and the comparison pictures run eagerly
(:func:`eager`), so whole validation images of every size never trigger a recompile.

As traiNNer-redux's ``use_compile``/``compile_mode`` and neosr's ``compile``; the first steps pay the compile
time (tens of seconds to minutes with inductor on a CPU), later steps run the compiled kernels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_options(train_opt: dict | None) -> str | None:
    """The compile mode asked for by ``train.compile``/``train.compile_mode``; ``None`` when compile is off.

    Raises:
        ValueError: ``compile`` is not a boolean, or ``compile_mode`` is not one of :data:`MODES`.
    """
    train_opt = train_opt or {}
    on = train_opt.get("compile", False)
    if on is None:
        on = False
    if not isinstance(on, bool):
        raise ValueError(f"train.compile must be true or false, got {on!r}")
    mode = train_opt.get("compile_mode")
    mode = "default" if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"train.compile_mode '{mode}' is not one of {', '.join(MODES)}")
    return mode if on else None


def bare(net: nn.Module) -> nn.Module:
    """The module inside a DataParallel/DistributedDataParallel wrapper (the one whose names are saved)."""
    return net.module if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else net


def compile_in_place(net: nn.Module, mode: str) -> nn.Module:
    """``net.compile(mode=...)`` on the bare module (a DDP wrapper calls it): names and weights unchanged.

    Returns the same object, for chaining.
    """
    inner = bare(net)
    # Dynamo skips guarding on module hooks by default: a second network of the same class (the student after the
    # teacher stage, a teacher of the student's class) would then reuse the first one's graph and silently drop
    # the recorder's forward hooks (measured on torch 2.14). Guard on them.
    torch._dynamo.config.skip_nnmodule_hook_guards = False
    # The compiled call replaces __call__ only: forward(), state_dict() and the parameters are the eager ones.
    inner.compile(mode=None if mode == "default" else mode)
    return net


def is_compiled(net: nn.Module) -> bool:
    """Whether :func:`compile_in_place` (or ``nn.Module.compile``) was applied to ``net``'s bare module."""
    return getattr(bare(net), "_compiled_call_impl", None) is not None


@contextmanager
def eager() -> Iterator[None]:
    """Run compiled modules eagerly inside the block (validation, dry checks): no compile, no recompile."""
    with torch.compiler.set_stance("force_eager"):
        yield

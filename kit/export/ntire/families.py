"""Which torch-only source stands for which kit student in an NTIRE package, and with which arguments.

NTIRE's Efficient SR kit imports exactly one file, ``models/team<ID>_<Name>.py``, that may import nothing but
``torch``. Each shipped student family has a hand-written torch-only twin in ``kit/export/ntire/sources/``:
the *deployed* form (fused for RepSR), the kit's module names (so the kit's state dict loads with
``strict=True``), no registry, no BasicSR. The package writer copies the part of that file below its marker
line and appends ``class <Name>(<base>)`` whose ``__init__`` takes no argument and passes the exported
configuration.

Why per-family sources and not a generic emitter (e.g. from ``torch.fx``): an fx graph has no ``__init__``
to emit (the code it generates calls submodules it cannot build, so every leaf module type would need its own
writer anyway), it flattens the blocks into one long ``forward`` with generated names, and it turns
shape-dependent Python (NAFNet's padding to a multiple of 2^levels, ESA's resize to the input size) into
traced ops. The organisers read these files; a short reviewed class per family reads like the paper's code.
Drift between a source and the kit's class cannot go unnoticed: every export runs the written file, with the
kit hidden, against the kit's deployed network (:mod:`kit.export.ntire.package`), and the tests do it for
every family.

Adding a family (e.g. a new student ``FooStudent``):

1. write ``sources/foo.py``: a docstring, the marker line ``# --- ntire source ---``, then ``import torch``
   (``torch.nn``, ``torch.nn.functional``) and the deployed network as a class ``Foo`` whose submodules have
   the names of ``FooStudent.fuse()``'s (or ``FooStudent``'s when it has nothing to fuse);
2. add ``"FooStudent": Family("foo.py", "Foo", (<Foo's constructor arguments>))`` to :data:`FAMILIES`; the
   values are read from the options' ``network_g`` with the kit class's defaults filled in;
3. add the family to the parametrised tests in ``tests/test_export_ntire.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FAMILIES", "MARKER", "SOURCES", "Family", "family_for", "family_source", "family_arguments"]

SOURCES = Path(__file__).resolve().parent / "sources"
MARKER = "# --- ntire source ---"


@dataclass(frozen=True)
class Family:
    """A kit student's torch-only twin.

    Attributes:
        source: File name in :data:`SOURCES`.
        base: The class in that file that builds the deployed network.
        arguments: ``base``'s constructor arguments, all passed by keyword from the options.
    """

    source: str
    base: str
    arguments: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    "RLFNStudent": Family(
        "rlfn.py",
        "RLFN",
        ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "mid_feat", "esa_channels", "img_residual"),
    ),
    "RepSRStudent": Family("repsr.py", "RepSR", ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "act")),
    "SPANStudent": Family(
        "span.py", "SPAN", ("num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "img_range", "rgb_mean")
    ),
    "NAFStudent": Family(
        "naf.py",
        "NAFNet",
        ("num_in_ch", "num_out_ch", "scale", "width", "enc_blk_nums", "middle_blk_num", "dec_blk_nums"),
    ),
}


def family_for(network_type: str) -> Family:
    """The :class:`Family` of a ``network_g`` type.

    Raises:
        ValueError: the type has no torch-only source yet (the message says how to add one).
    """
    if network_type == "QATStudent":  # an INT8 fine-tuning: its fp32 weights were tuned for the quantiser
        raise ValueError(
            "no NTIRE package for a QATStudent run: NTIRE's track takes the fp32 network, so export the run the "
            "QAT fine-tuned from with --ntire-team, and this one with --int8 only"
        )
    try:
        return FAMILIES[network_type]
    except KeyError:
        raise ValueError(
            f"no NTIRE source for network_g type '{network_type}' (have: {', '.join(sorted(FAMILIES))}); drop "
            "--ntire-team, or add the family as kit/export/ntire/families.py explains"
        ) from None


def family_source(family: Family) -> str:
    """The part of the family's source file below :data:`MARKER` (imports and classes), stripped."""
    text = (SOURCES / family.source).read_text(encoding="utf-8")
    head, sep, body = text.partition(MARKER)
    if not sep:
        raise ValueError(f"{SOURCES / family.source} has no '{MARKER}' line")
    return body.strip() + "\n"


def family_arguments(family: Family, arch: type, network_g: Mapping[str, Any]) -> dict[str, Any]:
    """``base``'s keyword arguments: the options' ``network_g`` values, the kit class's defaults for the rest.

    Args:
        family: The family.
        arch: The kit class (e.g. :class:`~kit.archs.RLFNStudent`), whose signature gives the defaults.
        network_g: The options' ``network_g`` (``type`` and the constructor arguments).
    """
    spec = {k: v for k, v in network_g.items() if k != "type"}
    bound = inspect.signature(arch).bind(**spec)
    bound.apply_defaults()
    values = dict(bound.arguments)
    missing = [a for a in family.arguments if a not in values]
    if missing:
        raise ValueError(f"{arch.__name__} has no argument(s) {', '.join(missing)} named by its NTIRE family")
    return {a: _plain(values[a]) for a in family.arguments}


def _plain(value: Any) -> Any:
    """Tuples become lists (as YAML gives them), so the written file shows one spelling."""
    return list(value) if isinstance(value, tuple) else value

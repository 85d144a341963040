"""The options schema: every key BasicSR and the kit read, per section, so that a typo is an error, not a default.

``train:total_itr: 4`` used to train the default number of iterations without a word. :func:`check_options`
walks the options against the sections below and refuses a key nobody reads (with the closest names) and a
number written with a suffix (``total_iter: 20k``), naming the key. Free-form mappings are not walked here:

- a ``type:`` spec (networks, losses, schedulers, metrics, io backends): the class check of
  :mod:`kit.registry` refuses an argument the class does not take;
- mappings keyed by names the user chooses (``datasets``, ``val.metrics``, ``train.distill``, ``teachers``),
  whose entries are checked by their own parsers (:mod:`kit.distill.pairs`, :mod:`kit.teachers.multi`,
  :mod:`kit.distill.recipes` (each recipe's constructor), :mod:`kit.teachers.cache`).

The lists come from reading the code: ``opt[...]``/``.get(...)`` across ``kit/`` and the BasicSR 1.4.2 pieces the
kit uses (``build_dataloader``, ``PairedImageDataset``, ``MessageLogger``, ``SRModel``/``BaseModel``).
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from typing import Any

FREE = "free"  # a mapping whose keys are the user's names or a class's arguments: not walked here
OPEN = "..."  # in a section: keys it does not list are a class's arguments, left to the class check
INT = "int"  # a whole number
POS_INT = "pos_int"  # a whole number, 1 or more
COUNT = "count"  # a whole number, 0 or more
FLOAT = "float"  # a finite number
POS_FLOAT = "pos_float"  # a finite number above 0
NONNEG_FLOAT = "nonneg_float"  # a finite number, 0 or more
FRACTION = "fraction"  # a number in [0, 1)
POS_LIST = "pos_list"  # a list of numbers above 0 (iterations, or fractions of total_iter: kit.schedule)
NETWORK = "network"  # a network's type: spec; its widths and counts (num_feat, upscale, ...) checked
BOOL = "bool"
ANY = "any"

_WHOLE = (INT, POS_INT, COUNT)
_DOMAINS = {
    POS_INT: (lambda v: v >= 1, "1 or more"),
    COUNT: (lambda v: v >= 0, "0 or more"),
    POS_FLOAT: (lambda v: v > 0, "above 0"),
    NONNEG_FLOAT: (lambda v: v >= 0, "0 or more"),
    FRACTION: (lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.999"),
}
# a network's width or count argument: a whole number (channels, features, dims, the upscale: 1 or more)
_WIDTH_KEY = re.compile(r"num_\w+|\w*_(ch|chs|nc|channels|chans|feat|feats|dim)|in_chans|upscale|scale|embed_dim")
_COUNT_KEY = re.compile(r"num_\w*(block|conv|layer|group|rg|rcab)s?\w*")

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 4
_SHORT.maxlevel = 2


def short(value: Any) -> str:
    """``repr(value)``, cut to a few dozen characters: messages never format a whole options mapping."""
    return _SHORT.repr(value)


DATASET = {
    "name": ANY,
    "type": ANY,
    "dataroot_gt": ANY,
    "dataroot_lq": ANY,
    "meta_info_file": ANY,
    "filename_tmpl": ANY,
    "io_backend": FREE,
    "gt_size": POS_INT,
    "lq_size": POS_INT,
    "use_hflip": BOOL,
    "use_rot": BOOL,
    "use_shuffle": BOOL,
    "color": ANY,
    "mean": ANY,
    "std": ANY,
    "num_worker_per_gpu": ANY,  # an integer or "auto" (checked by kit.data.loader_options)
    "batch_size_per_gpu": POS_INT,
    "dataset_enlarge_ratio": POS_INT,
    "prefetch_mode": ANY,  # auto | cpu | cuda | null (checked by kit.data.loader_options)
    "pin_memory": ANY,  # auto | true | false (checked by kit.data.loader_options)
    "persistent_workers": ANY,  # auto | true | false (checked by kit.data.loader_options)
    "num_prefetch_queue": POS_INT,
    "cache_gb": NONNEG_FLOAT,
    "degradations": FREE,
    "seed": COUNT,
    "teacher_outputs": FREE,
}

SECTIONS: dict[str, Any] = {
    "name": ANY,
    "model_type": ANY,
    "scale": POS_INT,
    "num_gpu": ANY,  # an integer or 'auto' (checked in kit.run.startup against the GPUs present)
    "manual_seed": COUNT,
    "find_unused_parameters": BOOL,
    "dist_params": FREE,
    "network_g": NETWORK,
    "network_t": NETWORK,
    "teachers": FREE,
    "datasets": {"*": DATASET},
    "path": {
        "pretrain_network_g": ANY,
        "param_key_g": ANY,
        "strict_load_g": BOOL,
        "pretrain_network_t": ANY,
        "param_key_t": ANY,
        "strict_load_t": BOOL,
        "teacher_recipe": ANY,
        "resume_state": ANY,
    },
    "train": {
        "ema_decay": FRACTION,
        "optim_g": {"type": ANY, "lr": POS_FLOAT, "weight_decay": NONNEG_FLOAT, OPEN: FREE},
        "scheduler": {
            "type": ANY,
            "milestones": POS_LIST,
            "periods": POS_LIST,
            "gamma": POS_FLOAT,
            "eta_min": NONNEG_FLOAT,
            OPEN: FREE,
        },
        "total_iter": POS_INT,
        "warmup_iter": INT,
        "pixel_opt": FREE,
        "perceptual_opt": FREE,
        "distill": FREE,
        "recipes": FREE,
        "teacher_cache": ANY,
        "amp": ANY,
        "channels_last": BOOL,
        "compile": BOOL,
        "compile_mode": ANY,  # checked by kit.models.compiling
        "stop_on_divergence": BOOL,
    },
    "val": {
        "val_freq": POS_INT,
        "save_img": BOOL,
        "metrics": FREE,
        "tile": COUNT,
        "tile_overlap": COUNT,
        "compare_every": COUNT,
    },
    "logger": {"print_freq": POS_INT, "save_checkpoint_freq": POS_INT, "use_tb_logger": BOOL},
}


class SchemaError(ValueError):
    """An options key nobody reads, or a value of the wrong kind."""


def check_options(opt: dict[str, Any], source: str) -> None:
    """Refuse unknown keys (closest names given) and mistyped numbers anywhere in ``opt``.

    Args:
        opt: the options as the user wrote them (before :func:`kit.options.finalize` adds derived keys).
        source: where they came from, for the message (the file, or ``--force_yml``).
    """
    _walk(opt, SECTIONS, "", source)


def _walk(node: Any, spec: Any, where: str, source: str) -> None:
    if spec in (FREE, ANY):
        return
    if spec == NETWORK:
        _check_network(node, where, source)
        return
    if isinstance(spec, dict):
        if node is None:
            return
        if not isinstance(node, dict):
            raise SchemaError(f"{source}: {where or 'the top level'} must be a mapping, got {short(node)}")
        for key, value in node.items():
            child = spec.get("*", spec.get(key, spec.get(OPEN)))
            path = f"{where}:{key}" if where else str(key)
            if child is None:
                names = [k for k in spec if k != "*"]
                close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else f"; it takes {', '.join(names)}"
                shown = path if len(path) <= 80 else path[:77] + "..."
                raise SchemaError(f"{source}: unknown options key '{shown}' (nothing reads it){hint}")
            _walk(value, child, path, source)
        return
    _check_value(node, spec, where, source)


def _check_network(node: Any, where: str, source: str) -> None:
    """A network's widths and counts (``num_feat``, ``num_in_ch``, ``upscale``, ...): whole numbers, widths >= 1."""
    if not isinstance(node, dict):
        return  # the network builder names what a network spec must be
    for key, value in node.items():
        if not isinstance(key, str) or not _WIDTH_KEY.fullmatch(key):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_value(value, COUNT if _COUNT_KEY.fullmatch(key) else POS_INT, f"{where}:{key}", source)


def _check_value(value: Any, kind: str, where: str, source: str) -> None:
    if value is None:
        return
    if kind == BOOL and not isinstance(value, bool):
        raise SchemaError(f"{source}: {where} must be true or false, got {short(value)}")
    if kind == POS_LIST:
        if not isinstance(value, list):
            raise SchemaError(f"{source}: {where} must be a list of numbers, e.g. [2000, 4000], got {short(value)}")
        for i, item in enumerate(value):
            _check_value(item, POS_FLOAT, f"{where}[{i}]", source)
        return
    if kind in (*_WHOLE, *_DOMAINS, FLOAT):
        _check_number(value, kind, where, source)


def _check_number(value: Any, kind: str, where: str, source: str) -> None:
    whole = kind in _WHOLE
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and not math.isfinite(value):
        raise SchemaError(f"{source}: {where} must be a finite number, got {value}; write it in digits, e.g. 20000")
    if whole and number and float(value) != int(value):
        number = False
    if not number:
        example = "20000" if whole else "2e-4"
        raise SchemaError(
            f"{source}: {where} must be a {'whole ' if whole else ''}number, got {short(value)}; write it in "
            f"digits, e.g. {example} (suffixes such as 20k are not read)"
        )
    if kind in _DOMAINS:
        test, words = _DOMAINS[kind]
        if not test(value):
            raise SchemaError(f"{source}: {where} must be {words}, got {value}")

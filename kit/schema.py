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
from typing import Any

FREE = "free"  # a mapping whose keys are the user's names or a class's arguments: not walked here
INT = "int"
FLOAT = "float"
BOOL = "bool"
ANY = "any"

DATASET = {
    "name": ANY,
    "type": ANY,
    "dataroot_gt": ANY,
    "dataroot_lq": ANY,
    "meta_info_file": ANY,
    "filename_tmpl": ANY,
    "io_backend": FREE,
    "gt_size": INT,
    "lq_size": INT,
    "use_hflip": BOOL,
    "use_rot": BOOL,
    "use_shuffle": BOOL,
    "color": ANY,
    "mean": ANY,
    "std": ANY,
    "num_worker_per_gpu": ANY,  # an integer or "auto" (checked by kit.data.loader_options)
    "batch_size_per_gpu": INT,
    "dataset_enlarge_ratio": INT,
    "prefetch_mode": ANY,  # auto | cpu | cuda | null (checked by kit.data.loader_options)
    "pin_memory": ANY,  # auto | true | false (checked by kit.data.loader_options)
    "persistent_workers": ANY,  # auto | true | false (checked by kit.data.loader_options)
    "num_prefetch_queue": INT,
    "cache_gb": FLOAT,
    "degradations": FREE,
    "seed": INT,
    "teacher_outputs": FREE,
}

SECTIONS: dict[str, Any] = {
    "name": ANY,
    "model_type": ANY,
    "scale": INT,
    "num_gpu": ANY,  # an integer or 'auto' (checked in kit.run.startup against the GPUs present)
    "manual_seed": INT,
    "find_unused_parameters": BOOL,
    "dist_params": FREE,
    "network_g": FREE,
    "network_t": FREE,
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
        "ema_decay": FLOAT,
        "optim_g": FREE,
        "scheduler": FREE,
        "total_iter": INT,
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
        "val_freq": INT,
        "save_img": BOOL,
        "metrics": FREE,
        "tile": INT,
        "tile_overlap": INT,
        "compare_every": INT,
    },
    "logger": {"print_freq": INT, "save_checkpoint_freq": INT, "use_tb_logger": BOOL},
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
    if isinstance(spec, dict):
        if node is None:
            return
        if not isinstance(node, dict):
            raise SchemaError(f"{source}: {where or 'the top level'} must be a mapping, got {node!r}")
        for key, value in node.items():
            child = spec.get("*", spec.get(key))
            path = f"{where}:{key}" if where else str(key)
            if child is None:
                names = [k for k in spec if k != "*"]
                close = difflib.get_close_matches(str(key), names, n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else f"; it takes {', '.join(names)}"
                raise SchemaError(f"{source}: unknown options key '{path}' (nothing reads it){hint}")
            _walk(value, child, path, source)
        return
    _check_value(node, spec, where, source)


def _check_value(value: Any, kind: str, where: str, source: str) -> None:
    if value is None:
        return
    if kind == BOOL and not isinstance(value, bool):
        raise SchemaError(f"{source}: {where} must be true or false, got {value!r}")
    if kind in (INT, FLOAT):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == INT and number and float(value) != int(value):
            number = False
        if not number:
            example = "20000" if kind == INT else "2e-4"
            raise SchemaError(
                f"{source}: {where} must be a {'whole ' if kind == INT else ''}number, got {value!r}; write it in "
                f"digits, e.g. {example} (suffixes such as 20k are not read)"
            )

"""Options files: safe YAML, ``--force_yml`` overrides without ``exec``, paths resolved against the repo root.

Replaces ``basicsr.utils.options.parse_options``, which parses with ``yaml.CLoader`` (a
``!!python/object/apply:os.system`` tag runs a shell command), reads plain ``2e-4`` as a string and
applies ``--force_yml`` through ``exec``.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit.schema import check_options

REPO_ROOT = Path(__file__).resolve().parent.parent


class OptionsError(ValueError):
    """An options file or override that cannot be used as written."""


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(value: Any, where: str) -> str:
    """``value`` if it is a plain name (letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit).

    Names become folders (``experiments/<name>``, ``tb_logger/<name>``, ``submissions/<name>``, a teacher's
    folder in the teacher cache): a ``/``, ``\\``, ``..``, an absolute path or an empty name would write or
    move folders outside the kit's output folders, so it is refused before anything is created.
    """
    if not isinstance(value, str) or not _PLAIN_NAME.match(value):
        raise OptionsError(
            f"{where} {value!r} is not a plain name: use letters, digits, '.', '_' and '-' only, starting with a "
            "letter or digit (it becomes a folder name; no '/', '\\', '..' or absolute paths)"
        )
    return value


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``2e-4``/``1E5`` as floats (YAML 1.1 needs a dot) and refuses duplicate keys.

    PyYAML keeps the last of two equal keys in a mapping without a word; an options file that sets
    ``total_iter`` twice is a mistake to show, not to resolve silently.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise OptionsError(
                    f"{self.name}: key '{key}' appears twice in the same mapping (lines {seen[key]} and {line}); "
                    "keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text safely; a ``!!python/...`` (or any unknown) tag is refused, nothing runs."""
    loader = _SafeLoader(text)
    loader.name = source
    try:
        return loader.get_single_data()
    except yaml.constructor.ConstructorError as err:
        raise OptionsError(
            f"{source}: refused a YAML tag that would build Python objects ({err.problem}); options files may "
            "only hold plain values, lists and mappings. Remove the tag (a number can be written as 2e-4)."
        ) from err
    except yaml.YAMLError as err:
        raise OptionsError(f"{source}: not valid YAML: {err}") from err
    finally:
        loader.dispose()


def load_options(path: str | os.PathLike) -> dict[str, Any]:
    """Read an options file (safe YAML) into a dict, without BasicSR's derived keys."""
    path = Path(path)
    if not path.is_file():
        raise OptionsError(f"options file '{path}' does not exist")
    opt = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(opt, dict):
        raise OptionsError(f"{path}: the top level must be a mapping, got {type(opt).__name__}")
    return opt


def apply_override(opt: dict[str, Any], entry: str) -> None:
    """Apply one ``--force_yml`` entry ``a:b:c=value`` (value parsed as YAML; new leaf keys allowed)."""
    if "=" not in entry:
        raise OptionsError(f"--force_yml '{entry}' must look like key:sub:key=value")
    keys, value = entry.split("=", 1)
    parts = [k.strip() for k in keys.split(":")]
    node = opt
    for depth, key in enumerate(parts[:-1]):
        if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
            where = ":".join(parts[:depth]) or "the top level"
            choices = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(key, choices, n=3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise OptionsError(f"--force_yml '{entry}': no mapping '{key}' under {where}{hint}")
        node = node[key]
    node[parts[-1]] = parse_yaml(value.strip(), f"--force_yml {entry}")


def resolve_path(value: str | None, root: Path = REPO_ROOT) -> str | None:
    """Expand ``~`` and make a relative path absolute against the repo root (not the cwd)."""
    if value is None:
        return None
    p = Path(os.path.expanduser(str(value)))
    return str(p if p.is_absolute() else root / p)


_PATH_KEYS = ("dataroot_gt", "dataroot_lq", "meta_info_file")


def finalize(opt: dict[str, Any], is_train: bool = True, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Fill BasicSR's derived keys (phases, scale, experiment folders) and resolve paths against ``root``."""
    for key in ("name", "model_type", "network_g", "datasets"):
        if key not in opt:
            raise OptionsError(
                f"options have no '{key}'; every options file needs name, model_type, network_g, datasets"
            )
    check_name(opt["name"], "name")
    opt.setdefault("num_gpu", "auto")
    opt.setdefault("path", {})
    opt.setdefault("logger", {})
    opt["logger"].setdefault("print_freq", 100)
    opt["logger"].setdefault("save_checkpoint_freq", 5000)
    opt["logger"].setdefault("use_tb_logger", False)
    opt["is_train"] = is_train
    for phase, dataset in opt["datasets"].items():
        dataset["phase"] = phase.split("_")[0]
        if "scale" in opt:
            dataset["scale"] = opt["scale"]
        for key in _PATH_KEYS:
            if dataset.get(key) is not None:
                dataset[key] = resolve_path(dataset[key], root)
    for key, val in list(opt["path"].items()):
        if isinstance(val, str) and ("pretrain_network" in key or "resume_state" in key):
            opt["path"][key] = resolve_path(val, root)
    exp = root / ("experiments" if is_train else "results") / opt["name"]
    base = {"experiments_root": str(exp)} if is_train else {"results_root": str(exp)}
    opt["path"].update(base, log=str(exp), visualization=str(exp / "visualization"))
    if is_train:
        opt["path"].update(models=str(exp / "models"), training_states=str(exp / "training_states"))
    return opt


@dataclass
class TrainFlags:
    """``train.py``'s flags, with BasicSR's meaning (parsed by :func:`kit.cli.train.parse_args`)."""

    opt: str
    launcher: str = "none"
    auto_resume: bool = False
    debug: bool = False
    local_rank: int = 0
    force_yml: list[str] | None = None


def parse_train_options(args: TrainFlags, root: Path = REPO_ROOT) -> dict[str, Any]:
    """``train.py``'s flags into a finalized options dict (no distributed setup here)."""
    opt = load_options(args.opt)
    check_options(opt, str(args.opt))
    for entry in args.force_yml or []:
        apply_override(opt, entry)
        check_options(opt, f"--force_yml {entry}")
    opt["auto_resume"] = args.auto_resume
    if args.debug and not opt["name"].startswith("debug"):
        opt["name"] = "debug_" + opt["name"]
    finalize(opt, is_train=True, root=root)
    if opt["name"].startswith("debug"):
        if "val" in opt:
            opt["val"]["val_freq"] = 8
        opt["logger"].update(print_freq=1, save_checkpoint_freq=8)
    opt["opt_path"] = str(Path(args.opt).resolve())
    return opt

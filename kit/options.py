"""Options files: safe YAML, ``--force_yml`` overrides without ``exec``, paths resolved against the repo root.

Replaces ``basicsr.utils.options.parse_options``, which parses with ``yaml.CLoader`` (a
``!!python/object/apply:os.system`` tag runs a shell command), reads plain ``2e-4`` as a string and
applies ``--force_yml`` through ``exec``.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit.schedule import fit_schedule
from kit.schema import check_options, short

REPO_ROOT = Path(__file__).resolve().parent.parent


class OptionsError(ValueError):
    """An options file or override that cannot be used as written."""


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # always with fullmatch: "$" would match before a "\n"
MAX_NAME_LENGTH = 128
MAX_OPTIONS_BYTES = 1 << 20  # an options file is a few KB
MAX_YAML_VALUES = 100_000  # values once aliases are expanded (the shipped options files: a few hundred)
MAX_YAML_DEPTH = 64  # nesting levels (the shipped options files: 5)


def check_name(value: Any, where: str) -> str:
    """``value`` if it is a plain name (letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit).

    Names become folders (``experiments/<name>``, ``tb_logger/<name>``, ``submissions/<name>``, a teacher's
    folder in the teacher cache): a ``/``, ``\\``, ``..``, an absolute path, a newline or an empty name would
    write or move folders outside the kit's output folders (or name one no shell can type), so it is refused
    before anything is created. The message says what is wrong with this name.
    """
    problem = name_problem(value)
    if problem:
        raise OptionsError(
            f"{where} {short(value)} is not a plain name: {problem}. Use letters, digits, '.', '_' and '-' only, "
            "starting with a letter or digit (it becomes a folder name; no '/', '\\', '..' or absolute paths)"
        )
    return value


def name_problem(value: Any) -> str | None:
    """What keeps ``value`` from being a plain name, in words; ``None`` when it is one (a full match)."""
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"it is a number, not text; quote it (name: '{value}') or start it with a letter"
        return f"it is {type(value).__name__}, not text"
    if not value:
        return "it is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"it is {len(value)} characters long (at most {MAX_NAME_LENGTH})"
    if _PLAIN_NAME.fullmatch(value):
        return None
    if not (value[0].isascii() and value[0].isalnum()):
        return f"it starts with {value[0]!r}"
    index, char = next((i, c) for i, c in enumerate(value) if not (c.isascii() and (c.isalnum() or c in "._-")))
    where = "at its end" if index == len(value) - 1 else f"at position {index + 1}"
    return f"it holds {char!r} {where}"


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``2e-4``/``1E5`` as floats (YAML 1.1 needs a dot) and refuses duplicate keys.

    PyYAML keeps the last of two equal keys in a mapping without a word; an options file that sets
    ``total_iter`` twice is a mistake to show, not to resolve silently.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag in ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"):  # a tagged one: refused below
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise OptionsError(
                    f"{self.name}: line {line}: a {kind} is used as a mapping key; keys are names (or numbers)"
                )
            key = self.construct_object(key_node, deep=True)
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
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except RecursionError:
        raise OptionsError(f"{source}: nested deeper than YAML can read; options files are a few levels deep") from None
    except yaml.constructor.ConstructorError as err:
        raise OptionsError(
            f"{source}: refused a YAML tag that would build Python objects ({err.problem}); options files may "
            "only hold plain values, lists and mappings. Remove the tag (a number can be written as 2e-4)."
        ) from err
    except yaml.YAMLError as err:
        raise OptionsError(f"{source}: not valid YAML: {err}") from err
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases expand past :data:`MAX_YAML_VALUES` values, refer to themselves, or nest
    deeper than :data:`MAX_YAML_DEPTH` levels.

    An alias bomb (a 2 KB file whose aliases expand to 1e10 values) parses cheaply; a later walk of the values (a
    message, BasicSR's log of the options) runs for minutes and exhausts memory. Each node is measured once
    (memoised by identity, no recursion), so the check costs what the file's text costs.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    started: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key, children = id(node), _children(node)
        line = node.start_mark.line + 1
        if children_done:
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_YAML_VALUES:
                raise OptionsError(
                    f"{source}: line {line}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values (an "
                    "options file holds a few hundred); write the values out instead of nesting aliases"
                )
            if depth[key] > MAX_YAML_DEPTH:
                raise OptionsError(f"{source}: nested deeper than {MAX_YAML_DEPTH} levels; options are a few deep")
        elif key in started and key not in size:
            raise OptionsError(f"{source}: line {line}: an alias refers to the list or mapping holding it; remove it")
        elif key not in size:
            started.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def load_options(path: str | os.PathLike) -> dict[str, Any]:
    """Read an options file (safe YAML) into a dict, without BasicSR's derived keys."""
    path = Path(path)
    if not path.is_file():
        raise OptionsError(f"options file '{path}' does not exist")
    if path.stat().st_size > MAX_OPTIONS_BYTES:
        raise OptionsError(f"{path}: {path.stat().st_size:,} bytes is not an options file (they are a few KB)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise OptionsError(
            f"{path}: not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r}); save it as UTF-8"
        ) from None
    opt = parse_yaml(text, str(path))
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


def effective_options(
    path: str | os.PathLike, overrides: list[str] | None = None, debug: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The options as a run uses them, before BasicSR's derived keys; and the lines to log about them.

    The file (checked against :mod:`kit.schema`), each ``--force_yml`` entry applied and checked, the schedule fitted
    to ``total_iter`` (:func:`kit.schedule.fit_schedule`), and with ``debug`` the ``debug_`` name. ``train.py``
    saves this in the experiment folder; ``export.py`` and ``kit-eval`` read ``-opt``/``--force_yml`` through here
    too, so the same flags name the same run.
    """
    opt = load_options(path)
    check_options(opt, str(path))
    written = copy.deepcopy(opt.get("train"))
    for entry in overrides or []:
        apply_override(opt, entry)
        check_options(opt, f"--force_yml {entry}")
    notes = fit_schedule(opt.get("train") if isinstance(opt.get("train"), dict) else None, written)
    if debug and "name" in opt and not str(opt["name"]).startswith("debug"):
        opt["name"] = f"debug_{opt['name']}"
    return opt, notes


def finalize_train_options(opt: dict[str, Any], args: TrainFlags, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Effective options (:func:`effective_options`) with ``train.py``'s derived keys, in place."""
    opt["auto_resume"] = args.auto_resume
    finalize(opt, is_train=True, root=root)
    if opt["name"].startswith("debug"):
        if "val" in opt:
            opt["val"]["val_freq"] = 8
        opt["logger"].update(print_freq=1, save_checkpoint_freq=8)
    opt["opt_path"] = str(Path(args.opt).resolve())
    return opt


def parse_train_options(args: TrainFlags, root: Path = REPO_ROOT) -> dict[str, Any]:
    """``train.py``'s flags into a finalized options dict (no distributed setup here)."""
    opt, _ = effective_options(args.opt, args.force_yml, args.debug)
    return finalize_train_options(opt, args, root)

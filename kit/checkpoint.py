"""Checkpoints: safe loading (never unpickle code), atomic saving, key-mismatch summaries.

Every checkpoint the kit reads goes through :func:`load_checkpoint`: ``.safetensors`` through safetensors,
anything else through ``torch.load(weights_only=True)``, which refuses pickles that need arbitrary objects.
Every checkpoint the kit writes goes through :func:`save_atomic`: a temporary file in the same folder,
then ``os.replace``, so a run killed mid-write never leaves a half-written file under the final name.
Loading weights into a network (strict, with a hint of what foreign weights are) is :mod:`kit.pretrained`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

MAX_CHECKPOINT_BYTES = 16 << 30  # what a checkpoint may expand to when loaded (public SR teachers: < 1 GiB)
MAX_INFLATION = 4  # torch stores tensors uncompressed: its archives expand to about their own size


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely or does not fit the network."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint without executing code from it.

    Args:
        path: ``.pth``/``.pt``/``.ckpt`` (a torch zip or legacy pickle of tensors) or ``.safetensors``.

    Returns:
        The loaded mapping (tensors on the CPU).

    Raises:
        CheckpointError: the file is missing, is not a checkpoint, or needs arbitrary Python objects.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; check the path in the options or the flag")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"'{path}' is not a readable safetensors file: {err}") from err
    if not _looks_like_torch_file(path):
        raise CheckpointError(
            f"'{path}' is not a checkpoint: it is neither a torch zip archive nor a pickle (nor .safetensors); "
            "point the options at the .pth the training wrote (models/net_g_<iter>.pth)"
        )
    check_archive(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        msg = str(err)
        if "weights_only" in msg or "Unsupported global" in msg or "Unsupported operand" in msg:
            raise CheckpointError(
                f"'{path}' is a pickle that needs arbitrary Python objects to load, and unpickling it could run "
                "code, so it was refused (torch.load weights_only=True). Re-save only its tensors, e.g. "
                "torch.save({'params': model.state_dict()}, path), or convert it to .safetensors."
            ) from err
        raise CheckpointError(f"'{path}' is not a readable checkpoint ({type(err).__name__}: {msg[:200]})") from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"'{path}' holds a {type(obj).__name__}, not a mapping of tensors")
    return dict(obj)


def check_archive(path: str | os.PathLike) -> None:
    """Refuse a zip checkpoint that would expand past :data:`MAX_INFLATION` × its size or :data:`MAX_CHECKPOINT_BYTES`.

    torch writes its archives uncompressed, so their content is about the file's size: a 2 MB file that inflates
    to 2 GiB is not one torch wrote. Only the zip's directory is read (nothing is inflated).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable zip (a legacy pickle): torch.load says what it is
    size = path.stat().st_size
    if expanded > MAX_CHECKPOINT_BYTES or expanded > MAX_INFLATION * size + (1 << 20):
        raise CheckpointError(
            f"'{path}' ({_mib(size)}) would expand to {_mib(expanded)} when loaded (at most {MAX_INFLATION}x its size "
            f"and {_mib(MAX_CHECKPOINT_BYTES)}): torch writes checkpoints uncompressed, so it did not write this one. "
            "Re-save the weights with torch.save"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def check_weights(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights that ``load_state_dict`` would take without a word but that are no trained network's.

    ``load_state_dict`` casts: int8 or bool tensors under the names and shapes of a float network load silently
    (a quantised or damaged file becomes a garbage network), and NaN/Inf load as they are.

    Args:
        expected: the network's ``state_dict()``.
        state: the weights about to be loaded into it.
        source: the checkpoint, as messages name it.

    Raises:
        CheckpointError: naming the first such tensor and ``source``.
    """
    for key, want in expected.items():
        got = state.get(key)
        if not isinstance(got, torch.Tensor) or not want.is_floating_point():
            continue
        if not got.is_floating_point():
            have, need = str(got.dtype).removeprefix("torch."), str(want.dtype).removeprefix("torch.")
            raise CheckpointError(
                f"{source}: '{key}' holds {have} values where the network has {need} weights (integer or boolean "
                "tensors are no trained network's weights: a quantised or damaged file?); use the float checkpoint"
            )
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(
                f"{source}: '{key}' holds NaN or Inf values (the run that wrote it diverged); use an earlier checkpoint"
            )


def _looks_like_torch_file(path: Path) -> bool:
    """A torch zip archive (``PK``) or a legacy torch pickle (protocol 2+ starts with ``0x80``)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def extract_state_dict(
    ckpt: Mapping[str, Any], param_key: str | None = "params_ema", explicit: bool = False
) -> dict[str, torch.Tensor]:
    """Pick the network's weights out of a checkpoint in BasicSR or common public layouts.

    Order: ``param_key`` (``params_ema`` by default), then ``params``, ``params_ema``, ``state_dict``,
    ``model``, ``net_g``; else the mapping itself when it holds tensors. A leading ``module.`` is removed.
    ``explicit``: the user named ``param_key`` (e.g. ``path.param_key_t``), so its absence is an error
    listing the keys, never a silent fallback to another one. :func:`chosen_key` says which key was read.
    """
    return _extract(ckpt, param_key, explicit)[0]


def chosen_key(ckpt: Mapping[str, Any], param_key: str | None = "params_ema") -> str:
    """The key :func:`extract_state_dict` reads for ``param_key`` (``'(bare state dict)'`` when none)."""
    return _extract(ckpt, param_key, False)[1]


def _extract(ckpt: Mapping[str, Any], param_key: str | None, explicit: bool) -> tuple[dict[str, torch.Tensor], str]:
    if explicit and param_key and not isinstance(ckpt.get(param_key), Mapping):
        held = [k for k, v in ckpt.items() if isinstance(v, Mapping)]
        raise CheckpointError(
            f"the checkpoint has no '{param_key}' (the param_key the options name); it holds: "
            f"{', '.join(map(str, held)) or 'no nested weights (a bare state dict: leave param_key unset)'}"
        )
    keys = [param_key] if param_key else []
    keys += ["params", "params_ema", "state_dict", "model", "net_g"]
    state: Any = ckpt
    used = "(bare state dict)"
    for key in keys:
        if key in ckpt and isinstance(ckpt[key], Mapping):
            state, used = ckpt[key], key
            break
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k[7:] if k.startswith("module.") else k] = v
    if not out:
        raise CheckpointError(f"no tensors found in the checkpoint (top-level keys: {sorted(ckpt)[:8]})")
    return out, used


def describe_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], examples: int = 3) -> str:
    """One short summary of missing/unexpected/mis-shaped keys (a few examples, not a wall of names)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shaped = [k for k in expected if k in got and tuple(expected[k].shape) != tuple(got[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:examples])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:examples])})")
    if shaped:
        k = shaped[0]
        parts.append(
            f"{len(shaped)} with another shape (e.g. {k}: network {tuple(expected[k].shape)}, "
            f"checkpoint {tuple(got[k].shape)})"
        )
    return "; ".join(parts)


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` (or safetensors for ``.safetensors``) to a temp file, then rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in obj.items()}, tmp)
        else:
            torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a checkpoint is as readable as any file
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, (OSError, RuntimeError)) and _write_failed(err):
            free = shutil.disk_usage(path.parent).free / 2**20
            raise CheckpointError(
                f"could not write '{path}': the disk is full or the write failed ({free:.0f} MiB free on its file "
                "system); free some space (old experiments, *_archived_* folders) and resume with --auto_resume"
            ) from err
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_failed(err: BaseException) -> bool:
    """An out-of-space error, as the OS says it or as torch's zip writer says it (``file write failed``)."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    msg = str(err)
    return "file write failed" in msg or "inline_container" in msg or "No space left" in msg


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

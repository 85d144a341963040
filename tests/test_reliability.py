"""The pieces behind the fault matrix, in-process: schema, YAML duplicates, named keys, full disk, RNG, leftovers."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kit.checkpoint import CheckpointError, chosen_key, extract_state_dict, load_checkpoint, save_atomic
from kit.export.leftovers import OWNER_FILE, clean_stale
from kit.options import OptionsError, load_options, parse_yaml
from kit.run import rng
from kit.run.divergence import DivergenceError, DivergenceWatch
from kit.schema import SchemaError, check_options
from tests.helpers import REPO


def test_every_shipped_options_file_passes_the_schema() -> None:
    files = sorted((REPO / "options").glob("*.yml"))
    assert len(files) >= 8
    for path in files:
        check_options(load_options(path), str(path))


@pytest.mark.parametrize(
    ("opt", "words"),
    [
        ({"train": {"total_itr": 4}}, ["train:total_itr", "total_iter"]),
        ({"val": {"val_frequency": 4}}, ["val:val_frequency", "val_freq"]),
        ({"datasets": {"train": {"gt_szie": 96}}}, ["datasets:train:gt_szie", "gt_size"]),
        ({"logger": {"print_freq": "1k"}}, ["logger:print_freq", "1k", "digits"]),
        ({"train": {"total_iter": 2.5}}, ["train:total_iter", "whole number"]),
        ({"path": {"pretrain_network_x": "a.pth"}}, ["path:pretrain_network_x"]),
        ({"train": "fast"}, ["train must be a mapping"]),
    ],
)
def test_schema_refuses(opt: dict, words: list[str]) -> None:
    with pytest.raises(SchemaError) as err:
        check_options(opt, "o.yml")
    for word in words:
        assert word in str(err.value)


def test_schema_leaves_free_form_mappings_to_their_checks() -> None:
    """A type: spec's arguments, the user's names (pairs, metrics, datasets) are not the schema's to refuse."""
    check_options(
        {
            "network_g": {"type": "Anything", "whatever": 1},
            "train": {"distill": {"my_pair": {"student": "a"}}, "total_iter": 2e4, "scheduler": {"type": "X", "y": 1}},
            "val": {"metrics": {"my_psnr": {"type": "calculate_psnr"}}},
            "datasets": {"val_set5": {"name": "x", "io_backend": {"type": "disk", "anything": 1}}},
        },
        "o.yml",
    )


def test_duplicate_yaml_keys_are_refused_with_both_lines() -> None:
    with pytest.raises(OptionsError, match=r"f.yml: key 'lr' appears twice in the same mapping \(lines 2 and 3\)"):
        parse_yaml("train:\n  lr: 1\n  lr: 2\n", "f.yml")
    assert parse_yaml("a: {lr: 1}\nb: {lr: 2}\n") == {"a": {"lr": 1}, "b": {"lr": 2}}  # equal keys, other mappings


def test_a_named_param_key_never_falls_back() -> None:
    ckpt = {"params": {"w": torch.zeros(1)}}
    assert chosen_key(ckpt, "params_ema") == "params"  # the default falls back (and the log says so)
    assert set(extract_state_dict(ckpt, "params_ema")) == {"w"}
    with pytest.raises(CheckpointError, match="has no 'params_foo'.*it holds: params"):
        extract_state_dict(ckpt, "params_foo", explicit=True)


def test_random_bytes_are_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    path.write_bytes(os.urandom(1000).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    with pytest.raises(CheckpointError, match="is not a checkpoint: it is neither a torch zip archive nor a pickle"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0"),
        OSError(28, "No space left on device"),
    ],
)
def test_a_full_disk_is_named_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def full(obj, f) -> None:
        Path(f).write_bytes(b"half")
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=r"could not write '.*net_g_4.pth': the disk is full .* MiB free"):
        save_atomic({"x": torch.zeros(1)}, tmp_path / "net_g_4.pth")
    assert list(tmp_path.iterdir()) == []


def test_rng_capture_restore_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # a cached Gaussian in NumPy's state
    state = rng.capture()
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    save_atomic({"rng": state}, tmp_path / "s.state")
    loaded = load_checkpoint(tmp_path / "s.state")["rng"]
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    rng.restore(loaded)
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == expected


def test_capture_does_not_draw() -> None:
    torch.manual_seed(5)
    random.seed(5)
    rng.capture()
    a = (torch.rand(1).item(), random.random())
    torch.manual_seed(5)
    random.seed(5)
    assert (torch.rand(1).item(), random.random()) == a


def test_divergence_watch() -> None:
    watch = DivergenceWatch()
    for it in range(1, 11):
        assert watch.loss(it, 1.0) is None
    for it in range(11, 20):
        assert watch.loss(it, 50.0) is None  # the window is not full yet
    assert "the loss diverges" in watch.loss(20, 50.0)
    assert watch.loss(21, 50.0) is None  # once
    assert watch.validation(100, "val", "psnr", 25.0, 29.0, "bicubic") is None  # young and climbing
    assert watch.validation(200, "val", "psnr", 27.0, 29.0, "bicubic") is None
    assert "down from 27.000" in watch.validation(300, "val", "psnr", 26.0, 29.0, "bicubic")
    assert "below the bicubic baseline" in DivergenceWatch().validation(1, "val", "psnr", 9.6, 29.6, "bicubic")
    with pytest.raises(DivergenceError, match="stop_on_divergence"):
        DivergenceWatch(stop=True).validation(1, "val", "psnr", 9.6, 29.6, "bicubic")


def test_stale_export_staging_folders_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead, live, fresh = tmp_path / ".a.partial-1", tmp_path / ".a.partial-2", tmp_path / ".b.partial-3"
    for folder in (dead, live, fresh):
        folder.mkdir()
    (dead / OWNER_FILE).write_text("999999999")  # no such process
    (live / OWNER_FILE).write_text(str(os.getppid()))
    old = tmp_path / ".c.partial-4"  # a leftover of an export before owner files existed
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "a").mkdir()  # a submission: never touched
    assert sorted(clean_stale(tmp_path)) == sorted([dead, old])
    assert live.exists() and fresh.exists() and (tmp_path / "a").exists()

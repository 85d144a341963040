"""The pieces behind the fault matrix, in-process: schema, YAML duplicates, named keys, full disk, RNG, leftovers."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kit.checkpoint import (
    CheckpointError,
    check_weights,
    chosen_key,
    extract_state_dict,
    load_checkpoint,
    save_atomic,
)
from kit.data.checks import image_sizes
from kit.export.leftovers import OWNER_FILE, clean_stale
from kit.guards import MAX_IMAGE_PIXELS
from kit.images import ImageTooLarge, read_image
from kit.options import OptionsError, check_name, load_options, parse_yaml
from kit.run import rng
from kit.run.divergence import DivergenceError, DivergenceWatch
from kit.run.lock import ExperimentLocked, experiment_lock, lock_path
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


# ----------------------------------------------------------------------------- issue 26: bounded inputs, owned folders
@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            BOMB_TEXT := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"l{i}: &l{i} [{', '.join(['*' + ('a' if i == 0 else f'l{i - 1}')] * 10)}]\n" for i in range(9)),
            ["aliases", "100,000 values"],
        ),
        ("a: &a [1, *a]\n", ["line 1", "refers to the list or mapping holding it"]),
        ("? [a, b]\n: 1\n", ["line 1", "a list is used as a mapping key"]),
        ("deep: " + "[" * 20000 + "]" * 20000 + "\n", ["nested deeper"]),
        ("deep: " + "[" * 80 + "]" * 80 + "\n", ["nested deeper than 64 levels"]),
    ],
)
def test_yaml_refuses_what_would_exhaust_the_machine_at_parse_time(text: str, words: list[str]) -> None:
    start = time.process_time()
    with pytest.raises(OptionsError) as err:
        parse_yaml(text, "f.yml")
    for word in words:
        assert word in str(err.value)
    assert time.process_time() - start < 10  # a bound, not a timing: expanded, the bomb is 1e10 values


def test_yaml_aliases_within_the_budget_still_work() -> None:
    assert parse_yaml("a: &a {x: 1}\nb: *a\nc: [*a, *a]\n") == {"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}] * 2}


def test_a_non_utf8_options_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "o.yml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(OptionsError, match=r"o.yml: not UTF-8 text \(byte 9: b'\\xe9'\); save it as UTF-8"):
        load_options(path)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("run\n", r"'run\\n' is not a plain name: it holds '\\n' at its end"),
        ("a b", "it holds ' ' at position 2"),
        (123, "name 123 is not a plain name: it is a number, not text; quote it"),
        ("../x", "it starts with '.'"),
        ("", "it is empty"),
        ("x" * 300, "it is 300 characters long"),
    ],
)
def test_a_name_is_matched_whole_and_the_message_says_what_is_wrong_with_it(name, problem) -> None:
    with pytest.raises(OptionsError, match=problem):
        check_name(name, "name")


@pytest.mark.parametrize(
    ("opt", "words"),
    [
        ({"train": {"total_iter": float("inf")}}, ["train:total_iter must be a finite number"]),
        ({"train": {"total_iter": -1}}, ["train:total_iter must be 1 or more, got -1"]),
        ({"train": {"ema_decay": float("nan")}}, ["train:ema_decay must be a finite number"]),
        ({"train": {"ema_decay": 1.0}}, ["train:ema_decay must be in [0, 1)"]),
        ({"scale": 0}, ["scale must be 1 or more"]),
        ({"logger": {"print_freq": 0}}, ["logger:print_freq must be 1 or more"]),
        ({"datasets": {"train": {"gt_size": -96}}}, ["datasets:train:gt_size must be 1 or more"]),
        ({"train": {"optim_g": {"type": "Adam", "lr": "abc"}}}, ["train:optim_g:lr must be a number, got 'abc'"]),
        ({"train": {"scheduler": {"type": "MultiStepLR", "milestones": 5}}}, ["train:scheduler:milestones", "list"]),
        ({"network_g": {"type": "X", "num_feat": 12.5}}, ["network_g:num_feat must be a whole number"]),
        ({"network_t": {"type": "X", "num_in_ch": -3}}, ["network_t:num_in_ch must be 1 or more"]),
        ({"train": {"x" * 500: 1}}, ["unknown options key"]),
        ({"train": list(range(10**5))}, ["train must be a mapping, got [0, 1, 2, 3, ...]"]),
    ],
)
def test_schema_domains(opt: dict, words: list[str]) -> None:
    with pytest.raises(SchemaError) as err:
        check_options(opt, "o.yml")
    assert len(str(err.value)) < 700  # never a whole mapping
    for word in words:
        assert word in str(err.value)


def test_schema_domains_accept_the_usual_values() -> None:
    check_options(
        {
            "scale": 4,
            "manual_seed": 0,
            "network_g": {"type": "X", "num_feat": 48, "num_block": 0, "upscale": 4, "img_range": 255.0},
            "train": {
                "ema_decay": 0.999,
                "warmup_iter": -1,
                "optim_g": {"type": "Adam", "lr": 2e-4, "betas": [0.9, 0.99]},
                "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [1.0], "eta_min": 1e-7},
            },
            "val": {"tile": 0, "compare_every": 0},
        },
        "o.yml",
    )


def test_an_archive_that_inflates_is_refused_before_torch_reads_it(tmp_path: Path) -> None:
    from tests.test_faults import inflating_zip

    path = inflating_zip(tmp_path / "bomb.pth")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"bomb.pth' \(0.1 MiB\) would expand to 64.0 MiB"):
        load_checkpoint(path)
    save_atomic({"params": {"w": torch.zeros(1000, 100)}}, tmp_path / "ok.pth")
    assert load_checkpoint(tmp_path / "ok.pth")["params"]["w"].shape == (1000, 100)  # torch's own: uncompressed


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        (torch.ones(3, 3, dtype=torch.int8), ["'w' holds int8 values where the network has float32"]),
        (torch.ones(3, 3, dtype=torch.bool), ["'w' holds bool values"]),
        (torch.full((3, 3), float("nan")), ["'w' holds NaN or Inf values"]),
        (torch.full((3, 3), float("inf")), ["'w' holds NaN or Inf values"]),
    ],
)
def test_weights_a_float_network_would_cast_silently_are_refused(weights, words) -> None:
    with pytest.raises(CheckpointError) as err:
        check_weights({"w": torch.zeros(3, 3), "n": torch.zeros((), dtype=torch.long)}, {"w": weights}, "t.pth")
    for word in words:
        assert word in str(err.value)
    check_weights({"w": torch.zeros(3, 3), "n": torch.zeros((), dtype=torch.long)}, {"w": torch.ones(3, 3)}, "t.pth")


def test_one_pixel_limit_for_the_kits_readers_and_opencv(tmp_path: Path) -> None:
    """kit.images refuses by the header (training's checks, kit-eval and the teacher cache read through it)."""
    from tests.test_faults import bomb_png

    (tmp_path / "lq").mkdir()
    (tmp_path / "lq/a.png").write_bytes(bomb_png(20000, 20000))
    (tmp_path / "lq/b.png").write_bytes(bomb_png(9000, 9000))  # above the kit's limit, below PIL's own
    for name, pixels in (("a.png", "400,000,000"), ("b.png", "9000x9000")):
        with pytest.raises(ImageTooLarge, match=f"{name}' declares {pixels}"):
            read_image(tmp_path / "lq" / name)
    assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == str(MAX_IMAGE_PIXELS)


def test_kit_eval_refuses_a_decompression_bomb(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kit.cli.eval import main
    from tests.test_faults import bomb_png

    for side in ("lq", "gt"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "a.png").write_bytes(bomb_png(20000, 20000))
    assert main(["--lq", str(tmp_path / "lq"), "--gt", str(tmp_path / "gt"), "--bicubic", "--scale", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kit-eval: error: image") and "a.png' declares 400,000,000 pixels" in err
    assert len(err.splitlines()) == 1


def test_an_lmdb_dataroot_is_decoded_record_by_record(tmp_path: Path) -> None:
    import io

    import lmdb
    from PIL import Image

    path = tmp_path / "gt.lmdb"
    with lmdb.open(str(path), map_size=1 << 24) as env, env.begin(write=True) as txn:
        for key, size in (("a", (40, 30)), ("b", (20, 10))):
            buffer = io.BytesIO()
            Image.new("RGB", size).save(buffer, "PNG")
            txn.put(key.encode(), buffer.getvalue())
        txn.put(b"c", b"not an image")
    (path / "meta_info.txt").write_text("a.png (30,40,3) 1\nb.png (10,20,3) 1\n")
    assert image_sizes(str(path), "datasets:train:dataroot_gt") == {path / "a": (40, 30), path / "b": (20, 10)}
    (path / "meta_info.txt").write_text("a.png (30,40,3) 1\nc.png (1,1,3) 1\n")
    with pytest.raises(ValueError, match="record 'gt.lmdb/c' cannot be decoded|image 'gt.lmdb/c' cannot be decoded"):
        image_sizes(str(path), "datasets:train:dataroot_gt")


def test_the_experiment_lock(tmp_path: Path) -> None:
    experiments, warnings = tmp_path / "experiments", []
    with experiment_lock(experiments, "x", warnings.append) as path:
        assert path.read_text() == f"{os.getpid()}\n"
        again = experiment_lock(experiments, "x", warnings.append)
        with pytest.raises(ExperimentLocked, match="already being run by this process"), again:
            pass
        with experiment_lock(experiments, "y", warnings.append):  # another name: its own lock
            pass
    assert not experiments.exists() and warnings == []  # released, and the folder it made removed
    experiments.mkdir()
    lock_path(experiments, "x").write_text("999999999\n")  # a killed run's lock
    with experiment_lock(experiments, "x", warnings.append):
        pass
    assert len(warnings) == 1 and "took over the lock" in warnings[0] and "pid 999999999" in warnings[0]
    assert list(experiments.iterdir()) == []


def test_a_held_lock_names_the_other_process(tmp_path: Path) -> None:
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
        "from kit.run.lock import experiment_lock\n"
        "with experiment_lock(Path(sys.argv[2]), 'x', print):\n    print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with (
            pytest.raises(ExperimentLocked, match=rf"experiment 'x' is in use by a running train.py \(pid {child.pid}"),
            experiment_lock(tmp_path, "x", print),
        ):
            pass
    finally:
        child.kill()
        child.wait()
    with experiment_lock(tmp_path, "x", print):  # the kernel dropped the dead process's lock
        pass


def test_nothing_is_written_outside_the_repository_by_onnxruntime_or_opencv(tmp_path: Path) -> None:
    """``import kit`` turns onnxruntime's telemetry off (it wrote ~/.cache/Microsoft/...) and bounds OpenCV."""
    from tests.test_faults import bomb_png

    (tmp_path / "b.png").write_bytes(bomb_png(9000, 9000))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_", "OPENCV_", "MPL"))}
    env |= {"HOME": str(home), "PYTHONPATH": str(REPO)}
    code = (
        "import sys, kit, onnxruntime, cv2, numpy as np, matplotlib\n"
        "matplotlib.use('Agg'); import matplotlib.pyplot as plt; plt.figure().savefig(sys.argv[1] + '.png')\n"
        "try:\n    cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)\n"
        "except cv2.error as err:\n    print('refused' if 'MAX_IMAGE_PIXELS' in str(err) else err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.png")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "refused"
    assert list(home.rglob("*")) == []


def test_an_options_file_over_1_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    path.write_text("name: x\n" + "#" * (1 << 20))
    with pytest.raises(OptionsError, match=r"huge.yml: 1,048,584 bytes is not an options file"):
        load_options(path)


def test_two_files_of_one_stem_in_a_folder_basicsr_reads_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("a.png", "a.bmp"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(ValueError, match=r"'a.bmp' and 'a.png' in .* share a name"):
        image_sizes(str(tmp_path), "datasets:train:dataroot_gt", every_file=True)
    assert len(image_sizes(str(tmp_path), "datasets:train:dataroot_gt")) == 2  # the kit's own datasets: no pairing


def test_a_crop_border_must_leave_an_ssim_window(tmp_path: Path) -> None:
    from kit.data.checks import check_crop_border

    sizes = {tmp_path / "x.png": (40, 30)}
    check_crop_border({"psnr": {"type": "calculate_psnr", "crop_border": 14}}, sizes, "datasets:val")  # 2 rows left
    with pytest.raises(ValueError, match=r"val:metrics:ssim:crop_border 14 leaves no SSIM window .* crop_border 9"):
        check_crop_border({"ssim": {"type": "calculate_ssim", "crop_border": 14}}, sizes, "datasets:val")
    with pytest.raises(ValueError, match=r"val:metrics:psnr:crop_border 15 leaves no pixels .* crop_border 14"):
        check_crop_border({"psnr": {"type": "calculate_psnr", "crop_border": 15}}, sizes, "datasets:val")


def test_an_experiments_folder_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "experiments").write_text("not a folder")
    lock = experiment_lock(tmp_path / "experiments", "x", print)
    with pytest.raises(NotADirectoryError, match=r"experiments' is a file, not a folder"), lock:
        pass
    assert (tmp_path / "experiments").read_text() == "not a folder"

"""An options file writes only where the kit's outputs live: names are plain names, nothing outside is moved."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from kit.cli.export import main as export_main
from kit.cli.train import parse_args
from kit.options import OptionsError, check_name
from kit.run import run_training
from kit.run.experiment import archive_experiment
from tests.helpers import REPO, distill_options, run_train, tiny_options, tiny_teacher_checkpoint, write_options


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with the file's hash (and ``folder`` itself must exist)."""
    assert folder.is_dir()
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def victim(tmp_path) -> Path:
    """A folder of the user's own, outside the repository, that a hostile name points at."""
    folder = tmp_path / "victim2"
    (folder / "sub").mkdir(parents=True)
    (folder / "important.txt").write_text("my thesis")
    (folder / "sub" / "data.bin").write_bytes(os.urandom(64))
    return folder


def _bad_names(victim: Path) -> list[str]:
    relative = os.path.relpath(victim, REPO / "experiments")  # ../../…/victim2 from experiments/
    return [relative, str(victim), "a/b", "a\\b", "..", ".", "", "-rf", "name with space"]


@pytest.mark.parametrize("good", ["distill_rlfn_x4", "exp.1", "A-b_c"])
def test_plain_names_pass(good) -> None:
    assert check_name(good, "name") == good


def test_train_refuses_every_bad_name_before_anything_is_written(bundled_root, tmp_path, victim) -> None:
    before = _tree(victim)
    for bad in _bad_names(victim):
        opt = tiny_options(bundled_root, bad)
        with pytest.raises(OptionsError, match="is not a plain name"):
            run_training(parse_args(["-opt", str(write_options(tmp_path / "bad.yml", opt))]), root=tmp_path)
        with pytest.raises(OptionsError, match="is not a plain name"):  # the same through --force_yml
            run_training(parse_args(["-opt", str(write_options(tmp_path / "ok.yml", tiny_options(bundled_root, "ok"))),
                          "--force_yml", f"name={bad!r}"]), root=tmp_path)  # fmt: skip
    assert _tree(victim) == before
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "tb_logger").exists()


def test_train_py_exits_with_the_reason_and_the_folder_outside_is_untouched(bundled_root, tmp_path, victim) -> None:
    before = _tree(victim)
    name = os.path.relpath(victim, REPO / "experiments")
    opt_file = write_options(tmp_path / "hostile.yml", tiny_options(bundled_root, name))
    proc = run_train(["-opt", str(opt_file)], cwd=tmp_path, timeout=600)
    assert proc.returncode != 0
    assert "is not a plain name" in proc.stderr and "no '/'" in proc.stderr
    assert _tree(victim) == before
    assert not list(victim.parent.glob("victim2_archived_*"))


def test_export_refuses_bad_names_and_writes_nothing(bundled_root, tmp_path, victim) -> None:
    before = _tree(victim)
    out = tmp_path / "subs"
    good = write_options(tmp_path / "good.yml", tiny_options(bundled_root, "good"))
    for bad in _bad_names(victim):
        hostile = write_options(tmp_path / "hostile.yml", tiny_options(bundled_root, bad))
        assert export_main(["-opt", str(hostile), "--out-dir", str(out)]) != 0  # the options' name
        assert export_main(["-opt", str(good), f"--name={bad}", "--out-dir", str(out)]) != 0  # --name
    assert _tree(victim) == before
    assert not out.exists() or not any(out.iterdir())


def test_a_teacher_name_is_a_plain_name_too(bundled_root, tmp_path) -> None:
    from kit.teachers import TeacherError, teacher_entries

    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = {"teachers": {"../escape": {"network": net, "checkpoint": str(ckpt)}}}
    with pytest.raises(TeacherError, match="a teacher's name under teachers: '../escape' is not a plain name"):
        teacher_entries(opt)


def test_archiving_acts_only_directly_under_experiments(tmp_path, victim) -> None:
    experiments = tmp_path / "repo" / "experiments"
    experiments.mkdir(parents=True)
    before = _tree(victim)
    for outside in (victim, experiments / ".." / ".." / "victim2"):
        with pytest.raises(RuntimeError, match="only folders directly under"):
            archive_experiment(outside, experiments)
    (experiments / "link").symlink_to(victim, target_is_directory=True)
    with pytest.raises(RuntimeError, match="only folders directly under"):
        archive_experiment(experiments / "link", experiments)
    assert _tree(victim) == before
    (experiments / "mine").mkdir()
    moved = archive_experiment(experiments / "mine", experiments)
    assert moved.parent == experiments and moved.name.startswith("mine_archived_")


def test_two_archives_in_the_same_second_keep_both(tmp_path, monkeypatch) -> None:
    import kit.run.experiment as experiment

    monkeypatch.setattr(experiment, "get_time_str", lambda: "20261206_171024")
    experiments = tmp_path / "experiments"
    kept = []
    for content in ("first", "second", "third"):
        (experiments / "run").mkdir(parents=True)
        (experiments / "run" / "log.txt").write_text(content)
        kept.append(archive_experiment(experiments / "run", experiments))
    assert [p.name for p in kept] == [
        "run_archived_20261206_171024",
        "run_archived_20261206_171024_2",
        "run_archived_20261206_171024_3",
    ]
    assert [(p / "log.txt").read_text() for p in kept] == ["first", "second", "third"]


def test_a_teacher_cache_root_outside_the_repository_is_used_as_stated_and_never_moved(bundled_root, tmp_path) -> None:
    outside = tmp_path / "elsewhere" / "cache"
    outside.mkdir(parents=True)
    (outside / "keep.txt").write_text("not the kit's")
    teacher = tiny_teacher_checkpoint(tmp_path / "teacher.pth")
    opt = distill_options(bundled_root, "cache_out", *teacher, **{"train:total_iter": 2})
    del opt["train"]["distill"]["mid"]
    opt["train"]["teacher_cache"] = {"root": str(outside)}
    repo = tmp_path / "repo"
    for _ in range(2):  # the second run finds the experiment (archived) and the cache (reused)
        run_training(parse_args(["-opt", str(write_options(tmp_path / "a.yml", opt))]), root=repo)
        log = next(iter(sorted((repo / "experiments/cache_out").glob("train_*.log")))).read_text()
        assert f"Teacher cache: root {outside} (train.teacher_cache.root '{outside}')" in log
    assert (outside / "keep.txt").read_text() == "not the kit's"
    cache_folders = [p for p in outside.iterdir() if p.is_dir()]
    assert len(cache_folders) == 1 and (cache_folders[0] / "manifest.json").is_file()
    assert not list(outside.parent.glob("*archived*")) and not list(outside.glob("*archived*"))
    assert [p.name.startswith("cache_out_archived_") for p in (repo / "experiments").iterdir()].count(True) == 1
    torch.load(repo / "experiments/cache_out/models/net_g_latest.pth", weights_only=True)

"""Safe options: python tags refused (payload never runs), numbers as numbers, overrides, paths."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
from pathlib import Path

import pytest

from kit.options import (
    OptionsError,
    TrainFlags,
    apply_override,
    finalize,
    load_options,
    parse_train_options,
    parse_yaml,
)


def test_python_tag_refused_and_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.yml"
    bad.write_text(f"name: x\nevil: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(OptionsError, match="refused a YAML tag"):
        load_options(bad)
    assert not marker.exists()


def test_python_tag_refused_through_train_cli(tmp_path: Path) -> None:
    marker = tmp_path / "pwned2"
    bad = tmp_path / "bad.yml"
    bad.write_text(f"name: x\nevil: !!python/object/new:os.system ['touch {marker}']\n")
    with pytest.raises(OptionsError):
        parse_train_options(TrainFlags(str(bad)))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "value"),
    [("2e-4", 2e-4), ("!!float 2e-4", 2e-4), ("1E5", 1e5), ("-3.5e-2", -3.5e-2), ("0.5", 0.5), ("7", 7)],
)
def test_numbers_are_numbers(text: str, value: float) -> None:
    parsed = parse_yaml(f"lr: {text}")["lr"]
    assert parsed == value
    assert isinstance(parsed, int if text == "7" else float)


def test_strings_stay_strings() -> None:
    assert parse_yaml("a: e5\nb: 1e\nc: body.7")["a"] == "e5"
    assert parse_yaml("b: 1e")["b"] == "1e"


def test_force_yml_nested_and_typed() -> None:
    opt = {"train": {"distill": {"mid": {"loss": {"loss_weight": 10}}}, "optim_g": {"lr": 1.0}}}
    apply_override(opt, "train:distill:mid:loss:loss_weight=2")
    apply_override(opt, "train:optim_g:lr=2e-4")
    apply_override(opt, "train:optim_g:betas=[0.9, 0.99]")
    assert opt["train"]["distill"]["mid"]["loss"]["loss_weight"] == 2
    assert opt["train"]["optim_g"]["lr"] == 2e-4
    assert opt["train"]["optim_g"]["betas"] == [0.9, 0.99]


def test_force_yml_bad_path_names_the_key() -> None:
    opt = {"train": {"optim_g": {"lr": 1.0}}}
    with pytest.raises(OptionsError, match="no mapping 'optim_x' under train; closest: optim_g"):
        apply_override(opt, "train:optim_x:lr=1")
    with pytest.raises(OptionsError, match="key:sub:key=value"):
        apply_override(opt, "train:optim_g:lr")
    with pytest.raises(OptionsError, match="refused"):
        apply_override(opt, "train:optim_g:lr=!!python/object/apply:os.system ['true']")


def test_relative_paths_resolve_against_root_not_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    opt = {
        "name": "n",
        "model_type": "KitSRModel",
        "network_g": {"type": "X"},
        "scale": 2,
        "datasets": {"train": {"dataroot_gt": "datasets/a", "dataroot_lq": "/abs/b"}},
        "path": {"pretrain_network_g": "experiments/x.pth"},
    }
    finalize(opt, root=tmp_path)
    train = opt["datasets"]["train"]
    assert train["dataroot_gt"] == str(tmp_path / "datasets/a")
    assert train["dataroot_lq"] == "/abs/b"
    assert train["phase"] == "train" and train["scale"] == 2
    assert opt["path"]["pretrain_network_g"] == str(tmp_path / "experiments/x.pth")
    assert opt["path"]["experiments_root"] == str(tmp_path / "experiments/n")


def test_debug_flag_renames_and_shortens(tmp_path: Path) -> None:
    path = tmp_path / "o.yml"
    path.write_text("name: run\nmodel_type: KitSRModel\nnetwork_g: {type: X}\ndatasets: {}\nval: {val_freq: 1000}\n")
    opt = parse_train_options(TrainFlags(str(path), debug=True), root=tmp_path)
    assert opt["name"] == "debug_run"
    assert opt["val"]["val_freq"] == 8 and opt["logger"]["print_freq"] == 1

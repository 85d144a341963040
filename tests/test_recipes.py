"""Recipes change the training target/inputs as specified, and compose with feature pairs."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split

from types import SimpleNamespace

import pytest
import torch

from kit.distill.recipes.balance import PairBalance
from kit.distill.recipes.base import RECIPE_REGISTRY, Recipe, Recipes
from kit.distill.recipes.mix import TargetMix
from kit.distill.recipes.upcycle import Upcycle
from kit.registry import OptionsKeyError
from tests.helpers import build, distill_options, free_port, tiny_teacher_checkpoint


def _bound(recipe, **host):
    """``recipe`` bound to a stand-in host (``opt`` defaults to a x4 run)."""
    host.setdefault("opt", {"scale": 4, "train": {}})
    recipe.bind(SimpleNamespace(**host))
    return recipe


def test_mix_weight_at_given_steps() -> None:
    mix = TargetMix(start=0.0, end=1.0, end_iter=100, schedule="linear")
    assert [mix.alpha(i) for i in (0, 25, 50, 100, 400)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    cos = TargetMix(start=1.0, end=0.5, end_iter=10, schedule="cosine")
    assert cos.alpha(0) == 1.0 and cos.alpha(5) == pytest.approx(0.75) and cos.alpha(10) == pytest.approx(0.5)
    gt, teacher = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    torch.testing.assert_close(mix.pixel_target(gt, teacher, 25), torch.full((1, 3, 2, 2), 0.25))
    with pytest.raises(OptionsKeyError, match="start must be in"):
        TargetMix(start=1.5)


def test_mix_changes_the_pixel_target_in_the_model(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "m", net, ckpt)
    opt["train"]["distill"] = {}
    opt["train"]["recipes"] = {"mix": {"start": 0.0, "end": 1.0, "end_iter": 10}}
    model = build(opt, tmp_path)
    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 32, 32)
    teacher_img = model.teacher_images(lq)["teacher"]
    seen = []
    model.cri_pix = lambda out, target: seen.append(target.clone()) or (out - target).abs().mean()
    model.feed_data({"lq": lq, "gt": gt})
    model.optimize_parameters(3)  # alpha = 0.3
    torch.testing.assert_close(seen[0], 0.3 * gt + 0.7 * teacher_img)


def test_upcycled_inputs_are_lr_sized_hr_crops_labelled_by_the_teacher() -> None:
    up = _bound(Upcycle(variants=["hr_crop"], flips=False))
    lq = torch.rand(2, 3, 6, 7)
    gt = torch.rand(2, 3, 24, 28)
    torch.manual_seed(0)
    x, label = up.make(lq, gt, lambda t: t.repeat_interleave(4, -1).repeat_interleave(4, -2) * 0.5)
    assert x.shape == lq.shape
    found = [
        (i, j) for i in range(24 - 6 + 1) for j in range(28 - 7 + 1) if torch.equal(gt[..., i : i + 6, j : j + 7], x)
    ]
    assert found, "the upcycled input is not a crop of the HR image"
    torch.testing.assert_close(label, x.repeat_interleave(4, -1).repeat_interleave(4, -2) * 0.5)

    zoom = _bound(Upcycle(variants=["zoom_out"], flips=False))
    x, _ = zoom.make(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 64, 64), lambda t: t)
    assert x.shape == (1, 3, 4, 4)
    with pytest.raises(OptionsKeyError, match="variants"):
        Upcycle(variants=["rotate_45"])


def test_upcycle_in_the_model_uses_teacher_labels(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "m", net, ckpt)
    opt["train"]["recipes"] = {"upcycle": {"weight": 2.0, "variants": ["hr_crop"], "flips": True}}
    model = build(opt, tmp_path)
    calls = []
    make = model.recipes.get("upcycle").make

    def spy(lq, gt, label):
        x, y = make(lq, gt, label)
        calls.append((x, y))
        return x, y

    model.recipes.get("upcycle").make = spy
    model.feed_data({"lq": torch.rand(2, 3, 8, 8), "gt": torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    x, y = calls[0]
    torch.testing.assert_close(y, model.teacher_images(x)["teacher"])
    assert {"l_pix", "l_out", "l_mid", "l_upcycle"} <= set(model.log_dict)  # composes with the feature pair


def test_balance_caps_a_pair_relative_to_the_pixel_loss() -> None:
    bal = PairBalance(ratio=0.1, warmup_iter=10)
    big, ref = torch.tensor(4.0), torch.tensor(0.05)
    assert bal.scale("fit", big, ref, 10) == pytest.approx(0.1 * 0.05 / 4.0)
    assert bal.scale("fit", torch.tensor(100.0), ref, 5) == pytest.approx(0.5 * 0.1 * 0.05 / 4.0)  # fixed after step 1
    small = PairBalance(ratio=0.1)
    assert small.scale("tiny", torch.tensor(1e-4), ref, 1) == 1.0  # never amplified
    r = Recipes({"balance": {"ratio": 0.1}})
    r.pair_scale("fit", big, ref, 1)
    restored = Recipes({"balance": {"ratio": 0.1}})
    restored.load_state_dict(r.state_dict())
    assert restored.get("balance").scales == r.get("balance").scales
    assert r.state_dict() == {"balance_scales": {"fit": pytest.approx(0.1 * 0.05 / 4.0)}}  # the resume format


def test_balanced_pair_in_the_model(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "m", net, ckpt)
    opt["train"]["recipes"] = {"balance": {"ratio": 0.1}}
    model = build(opt, tmp_path)
    model.feed_data({"lq": torch.rand(2, 3, 8, 8), "gt": torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    assert model.log_dict["l_mid"] <= 0.1 * model.log_dict["l_pix"] * 1.0001


def test_unknown_recipe_or_argument_names_the_closest() -> None:
    with pytest.raises(OptionsKeyError, match=r"train:recipes:mixx: unknown type 'mixx'.*closest: mix"):
        Recipes({"mixx": {}})
    with pytest.raises(OptionsKeyError, match=r"train:recipes:mix: TargetMix has no argument 'strat' \(did you mean"):
        Recipes({"mix": {"strat": 0.0}})
    with pytest.raises(OptionsKeyError, match="train:recipes:balance: expected a mapping"):
        Recipes({"balance": 0.1})
    assert Recipes({"mix": None}).get("mix") is None  # an entry set to null is off


def test_every_recipe_is_registered_under_its_key_with_a_strict_constructor() -> None:
    import inspect

    keys = RECIPE_REGISTRY.keys()
    assert sorted(keys) == ["balance", "contrast", "fade", "mix", "mixing", "pool", "upcycle"]
    for key in keys:
        cls = RECIPE_REGISTRY.get(key)
        assert issubclass(cls, Recipe) and cls.key == key
        kinds = {p.kind for p in inspect.signature(cls).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{cls.__name__} takes **kwargs"
    orders = [RECIPE_REGISTRY.get(key).order for key in keys]
    assert len(set(orders)) == len(orders), "two recipes share an order: their options' order would matter"


def test_recipes_act_in_their_fixed_order_whatever_the_options_order() -> None:
    a = Recipes({"upcycle": {}, "balance": {}, "mix": {}})
    b = Recipes({"mix": {}, "upcycle": {}, "balance": {}})
    assert [r.key for r in a] == [r.key for r in b] == ["mix", "balance", "upcycle"]


def _balance_rank(rank: int, world: int, port: int, out: str) -> None:
    """One gloo rank: a pair loss and a pixel loss that differ per rank; write the scale it fixes."""
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        balance = PairBalance(ratio=0.1)
        pixel, pair = torch.tensor(0.05 * (rank + 1)), torch.tensor(1.0 + 3.0 * rank)
        scale = balance.scale("mid", pair, pixel, 1)
        with open(f"{out}.{rank}", "w") as f:
            f.write(repr(scale))
    finally:
        dist.destroy_process_group()


def test_balance_scale_is_the_same_on_every_ddp_rank(tmp_path) -> None:
    import torch.multiprocessing as mp

    out = str(tmp_path / "scale")
    mp.spawn(_balance_rank, args=(2, free_port(), out), nprocs=2, join=True)
    scales = [float((tmp_path / f"scale.{r}").read_text()) for r in range(2)]
    # mean pixel loss 0.075, mean pair loss 2.5: 0.1 * 0.075 / 2.5 on both ranks (not 0.005 and 0.0025)
    assert scales == [pytest.approx(0.003, rel=1e-6)] * 2


# ------------------------------------------------------------------ teacher pool (kit.distill.recipes.pool)
def _pool(**options):
    """A TeacherPool of a x4 run, not yet labelled (its ``bind`` would label the training set)."""
    from kit.distill.recipes.pool import TeacherPool

    pool = TeacherPool(**options)
    pool.scale = 4
    return pool


def _up(t: torch.Tensor) -> torch.Tensor:
    """A stand-in teacher: nearest x4 upscaling, halved (so a label is recognisably not the input)."""
    return t.repeat_interleave(4, -1).repeat_interleave(4, -2) * 0.5


def _write_png(path, h: int, w: int, seed: int):
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def test_pool_inputs_are_the_sources_and_the_labels_are_the_teachers(tmp_path) -> None:

    gt = [str(_write_png(tmp_path / "gt/a.png", 40, 48, 0))]
    lq = [str(_write_png(tmp_path / "lq/a.png", 10, 12, 1))]
    extra = _write_png(tmp_path / "extra/b.png", 20, 16, 2).parent
    pool = _pool(sources=["hr", "zoom_out"], folders=[str(extra)], flips=False)
    names = [n for n, _ in pool.pool_inputs(gt, lq)]
    assert names == ["hr/a", "zoom_out/a", "folder0/b"]
    shapes = [tuple(x.shape) for _, x in pool.pool_inputs(gt, lq)]
    assert shapes == [(1, 3, 40, 48), (1, 3, 2, 3), (1, 3, 20, 16)]  # the LR zoomed out by the scale
    calls = []
    pool.prepare(lambda x: calls.append(x) or _up(x), gt, lq, key="k", root=tmp_path, min_side=8)
    assert len(calls) == 2  # the 2x3 zoom-out is smaller than the 8-px crop: left out
    torch.manual_seed(0)
    x, y = pool.sample(5, 8, "cpu")
    assert x.shape == (5, 3, 8, 8) and y.shape == (5, 3, 32, 32)
    torch.testing.assert_close(y, _up(x).clamp(0, 1), atol=1e-3, rtol=0)  # labels are the teacher's (float16)
    sources = [(c[0] * 255).round() / 255 for c in calls]
    for crop in x:  # every input is a crop of a pool image, not of the training batch
        assert any(
            torch.equal(crop, s[:, i : i + 8, j : j + 8])
            for s in sources
            for i in range(s.shape[-2] - 7)
            for j in range(s.shape[-1] - 7)
        )


def test_pool_labels_are_stored_once_and_flips_move_input_and_label_together(tmp_path) -> None:
    from kit.distill.recipes.pool import TeacherPool

    gt = [str(_write_png(tmp_path / "gt/a.png", 24, 24, 3))]
    opt = {"sources": ["hr"], "cache_root": str(tmp_path / "cache")}
    first = _pool(**opt)
    first.prepare(_up, gt, [], key="k", root=tmp_path, min_side=8)
    again = _pool(**opt)
    again.prepare(lambda x: pytest.fail("the stored labels must be reused"), gt, [], key="k", root=tmp_path, min_side=8)
    torch.testing.assert_close(again.labels[0], first.labels[0])
    other = _pool(**opt)
    calls = []
    other.prepare(lambda x: calls.append(1) or _up(x), gt, [], key="another teacher", root=tmp_path, min_side=8)
    assert calls, "another teacher key must not read these labels"
    torch.manual_seed(1)
    x, y = first.sample(16, 8, "cpu")  # flips on by default: still label == teacher(input) for each crop
    torch.testing.assert_close(y, _up(x).clamp(0, 1), atol=1e-3, rtol=0)
    with pytest.raises(OptionsKeyError, match="sources"):
        TeacherPool(sources=["lr_crop"])
    with pytest.raises(OptionsKeyError, match="not a folder"):
        _pool(folders=[str(tmp_path / "nope")]).pool_inputs([], [])


def test_pool_in_the_model_adds_a_teacher_labelled_batch(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "m", net, ckpt)
    opt["train"]["recipes"] = {"pool": {"sources": ["zoom_out"], "weight": 2.0, "cache_root": None}}
    model = build(opt, tmp_path)
    pool = model.recipes.get("pool")
    assert len(pool.inputs) == 13  # one zoom-out per bundled training photo
    x0, y0 = pool.inputs[0].float()[None] / 255, pool.labels[0].float()[None]
    torch.testing.assert_close(y0, model.teacher_images(x0)["teacher"].clamp(0, 1), atol=2e-3, rtol=0)
    seen = []
    sample = pool.sample
    pool.sample = lambda *a: seen.append(sample(*a)) or seen[-1]
    losses = []
    loss = pool.loss
    pool.loss = lambda o, t: losses.append((o.detach().clone(), t.clone())) or loss(o, t)
    lq = torch.rand(2, 3, 8, 8)
    model.feed_data({"lq": lq, "gt": torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    x, y = seen[0]
    assert x.shape == lq.shape and not torch.equal(x, lq)  # the extra batch is not the training batch
    out, target = losses[0]
    assert torch.equal(target, y) and out.shape == y.shape  # the pool term's target is the teacher's label
    assert {"l_pix", "l_out", "l_mid", "l_pool"} <= set(model.log_dict)
    assert model.log_dict["l_pool"] == pytest.approx(2.0 * float((out - target).abs().mean()), rel=1e-5)


def test_contrast_feature_space_stops_at_its_layer_and_matches_the_module_output() -> None:
    from kit.distill.recipes.contrast import TeacherFeatureSpace

    ran = []
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    teacher[2].register_forward_hook(lambda *_: ran.append("last"))
    x = torch.rand(2, 3, 8, 8)
    feature = TeacherFeatureSpace(teacher, "1")(x)
    torch.testing.assert_close(feature, torch.relu(teacher[0](x)))
    assert ran == [], "the teacher ran past the contrast layer"
    with pytest.raises(OptionsKeyError, match="not a module of the teacher"):
        TeacherFeatureSpace(teacher, "body.9")


def test_contrast_term_pulls_toward_the_teacher_and_pushes_from_the_negatives() -> None:
    from kit.distill.recipes.contrast import ContrastRecipe

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    for p in teacher.parameters():
        p.requires_grad_(False)
    recipe = _bound(ContrastRecipe(layer="0", weight=1.0, negatives=["bicubic"]), teachers={"t": teacher})
    lq = torch.rand(1, 3, 6, 6)
    target = torch.rand(1, 3, 12, 12)
    bicubic = recipe.negative_images(lq, (12, 12), None)
    assert len(bicubic) == 1 and bicubic[0].shape == (1, 3, 12, 12)
    at_teacher = recipe.loss(target.clone(), target, bicubic)
    at_negative = recipe.loss(bicubic[0].clone(), target, bicubic)
    halfway = recipe.loss(0.5 * (target + bicubic[0]), target, bicubic)
    assert float(at_teacher) == pytest.approx(0.0, abs=1e-6)
    assert float(at_negative) == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < float(halfway) < 1.0
    out = (0.5 * (target + bicubic[0])).requires_grad_(True)
    recipe.loss(out, target, bicubic).backward()
    stepped = (out - 0.5 * out.grad / out.grad.abs().max()).detach()
    assert float(recipe.loss(stepped, target, bicubic)) < float(halfway)  # descending moves it toward the teacher
    with pytest.raises(OptionsKeyError, match="keeps no EMA student"):
        _bound(ContrastRecipe(layer="0"), teachers={"t": teacher})
    with pytest.raises(OptionsKeyError, match="choose from"):
        ContrastRecipe(layer="0", negatives=["vgg"])
    with pytest.raises(OptionsKeyError, match="needs layer"):
        ContrastRecipe()


def test_contrast_in_the_model_logs_its_term_and_trains(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "c", net, ckpt)
    opt["train"]["ema_decay"] = 0.999
    opt["train"]["recipes"] = {"contrast": {"layer": "body.0", "weight": 0.5}}
    model = build(opt, tmp_path)
    gt = torch.rand(1, 3, 32, 32)
    model.feed_data({"lq": gt[..., ::4, ::4].contiguous(), "gt": gt})
    model.optimize_parameters(1)
    assert 0.0 < model.log_dict["l_contrast"] <= 0.5
    with pytest.raises(OptionsKeyError, match="close names"):
        bad = distill_options(bundled_root, "c2", net, ckpt)
        bad["train"]["ema_decay"] = 0.999
        bad["train"]["recipes"] = {"contrast": {"layer": "body0"}}
        build(bad, tmp_path / "bad")


def test_feature_mixing_runs_the_teachers_tail_on_the_mix_with_gradient_to_the_student_only() -> None:
    from kit.distill.pairs.wiring import PairSpec
    from kit.distill.recipes.mixing import FeatureMixing

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 3, 1))
    for p in teacher.parameters():
        p.requires_grad_(False)
    pair = PairSpec(name="p", student="body.0", teacher="0", teacher_name="t", loss={"type": "L1Loss"})
    lq = torch.rand(2, 3, 5, 5)
    t_feat = teacher[0](lq)
    s_feat = torch.rand(2, 4, 5, 5, requires_grad=True)
    all_student = _bound(FeatureMixing(pair="p", keep=0.0), pairs=[pair], teachers={"t": teacher})
    out = all_student.mixed_image(teacher, lq, t_feat, s_feat)
    torch.testing.assert_close(out, teacher[1](s_feat))
    out.sum().backward()
    assert s_feat.grad is not None and s_feat.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    half = _bound(FeatureMixing(pair="p", keep=0.5), pairs=[pair], teachers={"t": teacher})
    mixed = half.mixed_image(teacher, lq, t_feat, s_feat.detach())
    from_teacher = torch.isclose(mixed, teacher(lq)).all(1)  # per position: the teacher's feature was kept
    from_student = torch.isclose(mixed, teacher[1](s_feat.detach())).all(1)
    assert bool((from_teacher | from_student).all()) and 0 < int(from_teacher.sum()) < from_teacher.numel()
    torch.testing.assert_close(teacher(lq), teacher[1](t_feat))  # the hook is removed afterwards
    with pytest.raises(OptionsKeyError, match="is not a feature pair"):
        _bound(FeatureMixing(pair="q"), pairs=[pair], teachers={"t": teacher})
    with pytest.raises(OptionsKeyError, match="keep must be in"):
        FeatureMixing(pair="p", keep=1.0)


def test_feature_mixing_in_the_model_logs_its_term(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "mx", net, ckpt)
    opt["train"]["recipes"] = {"mixing": {"pair": "mid", "keep": 0.5}}
    model = build(opt, tmp_path)
    gt = torch.rand(1, 3, 32, 32)
    model.feed_data({"lq": gt[..., ::4, ::4].contiguous(), "gt": gt})
    model.optimize_parameters(1)
    assert model.log_dict["l_mixing"] > 0


def test_hooking_recipes_refuse_a_compiled_teacher(bundled_root, tmp_path) -> None:
    net, ckpt = tiny_teacher_checkpoint(tmp_path / "t.pth")
    opt = distill_options(bundled_root, "cc", net, ckpt)
    opt["train"].update(compile=True, recipes={"mixing": {"pair": "mid"}})
    with pytest.raises(ValueError, match="set train:compile: false or remove recipes:mixing"):
        build(opt, tmp_path)

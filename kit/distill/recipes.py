"""Recipes that change the data or the target — what helps distillation in restoration.

Plain output-KD and FitNets-style feature regression give about 0 dB in SR (DCKD, AAAI'25); what
helps changes the data or the target. Each recipe is an option of DistillModel, composable with the
feature pairs:

.. code-block:: yaml

    train:
      recipes:
        mix:       # teacher/GT mixing (traiNNer-redux's ECO): pixel target = lerp(teacher, GT, alpha(iter))
          start: 0.0             # alpha at iter 0 (0 = all teacher, 1 = all GT)
          end: 1.0               # alpha at end_iter and after
          end_iter: 2000         # default: train.total_iter
          schedule: linear       # linear | cosine
        upcycle:   # data upcycling (DUKD, Zhang et al. 2023, arXiv 2309.14162): extra inputs the teacher labels
          weight: 1.0
          loss: {type: L1Loss, loss_weight: 1.0}
          variants: [hr_crop, zoom_out]  # LR-sized crops of the HR image; the LR zoomed out by the scale
          flips: true            # random flips/transposes of the upcycled input (invertible augmentations)
          every: 1               # apply every N iterations
        balance:   # keep each feature pair below a fraction of the pixel loss (see PairBalance)
          ratio: 0.1
          warmup_iter: 100
        pool:      # inputs without a GT labelled once by the teacher, an extra batch every step (kit.distill.pool)
          sources: [hr, zoom_out]
        contrast:  # DCKD-style contrastive term in the teacher's feature space (kit.distill.contrast)
          layer: block_1
          weight: 0.1
        mixing:    # MiPKD-style feature mixing: the teacher's tail runs on a teacher/student mix (kit.distill.mixing)
          pair: cwd
          keep: 0.5
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kit.registry import OptionsKeyError, build_loss


def check_recipe_keys(opt: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = set(opt) - set(allowed)
    if unknown:
        raise OptionsKeyError(f"{where}: unknown key(s) {sorted(unknown)}; it takes {', '.join(allowed)}")


class TargetMix:
    """ECO-style mixing: the pixel loss's target moves between the teacher's image and the ground truth.

    ``target = alpha * GT + (1 - alpha) * teacher`` with ``alpha`` from ``start`` to ``end`` over
    ``[0, end_iter]`` (linear or cosine), constant afterwards. Early on the teacher's smoother, reachable
    target is easier for a small student; the GT takes over by the end (traiNNer-redux's ECO schedule).
    """

    def __init__(self, start: float = 0.0, end: float = 1.0, end_iter: int = 1, schedule: str = "linear") -> None:
        for name, value in (("start", start), ("end", end)):
            if not 0.0 <= float(value) <= 1.0:
                raise OptionsKeyError(f"train:recipes:mix:{name} must be in [0, 1], got {value}")
        if schedule not in ("linear", "cosine"):
            raise OptionsKeyError(f"train:recipes:mix:schedule must be linear or cosine, got {schedule!r}")
        self.start, self.end, self.end_iter, self.schedule = float(start), float(end), max(int(end_iter), 1), schedule

    def alpha(self, current_iter: int) -> float:
        """Weight of the ground truth at ``current_iter`` (1-based)."""
        t = min(max(current_iter, 0) / self.end_iter, 1.0)
        if self.schedule == "cosine":
            t = 0.5 - 0.5 * math.cos(math.pi * t)
        return self.start + (self.end - self.start) * t

    def target(self, gt: torch.Tensor, teacher: torch.Tensor, current_iter: int) -> torch.Tensor:
        return torch.lerp(teacher, gt, self.alpha(current_iter))


class Upcycle:
    """DUKD data upcycling: extra student inputs labelled by the teacher, with their own loss.

    Variants (one drawn per application, from the global torch RNG so runs are reproducible):

    - ``hr_crop`` (zoom-in): an LR-sized crop of the HR image is the input; the teacher labels it at ×scale.
    - ``zoom_out``: the LR input bicubic-downscaled by the scale is the input; the teacher labels it.

    With ``flips`` the upcycled input is also flipped/transposed at random (invertible augmentations, so the
    teacher's label of the augmented input is a consistent target).
    """

    VARIANTS = ("hr_crop", "zoom_out")

    def __init__(self, opt: dict, scale: int) -> None:
        check_recipe_keys(opt, ("weight", "loss", "variants", "flips", "every"), "train:recipes:upcycle")
        self.loss_weight = float(opt.get("weight", 1.0))
        self.loss = build_loss(opt.get("loss", {"type": "L1Loss", "loss_weight": 1.0}), "upcycle:loss")
        self.variants = list(opt.get("variants", self.VARIANTS))
        bad = [v for v in self.variants if v not in self.VARIANTS]
        if bad or not self.variants:
            raise OptionsKeyError(f"train:recipes:upcycle:variants {bad or '[]'}: choose from {self.VARIANTS}")
        self.flips = bool(opt.get("flips", True))
        self.every = max(int(opt.get("every", 1)), 1)
        self.scale = scale

    def due(self, current_iter: int) -> bool:
        return current_iter % self.every == 0

    def inputs(self, lq: torch.Tensor, gt: torch.Tensor, variant: str) -> torch.Tensor:
        """The upcycled student input for one variant. ``lq``: (N, C, h, w); ``gt``: (N, C, s·h, s·w)."""
        n, _, h, w = lq.shape
        if variant == "hr_crop":
            top = int(torch.randint(0, gt.shape[-2] - h + 1, ()).item())
            left = int(torch.randint(0, gt.shape[-1] - w + 1, ()).item())
            return gt[..., top : top + h, left : left + w]
        s = max(self.scale, 2)
        size = (max(h // s, 4), max(w // s, 4))
        return F.interpolate(lq, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        if not self.flips:
            return x
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        if torch.rand(()) < 0.5:
            x = x.flip(-2)
        if torch.rand(()) < 0.5:
            x = x.transpose(-1, -2)
        return x

    def make(self, lq: torch.Tensor, gt: torch.Tensor, label) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input, teacher label)`` for this step; ``label(x)`` runs the frozen teacher(s)."""
        variant = self.variants[int(torch.randint(0, len(self.variants), ()).item())]
        x = self.augment(self.inputs(lq, gt, variant)).contiguous()
        return x, label(x)


class PairBalance:
    """Keeps every feature pair's loss below ``ratio`` × the pixel loss, with a linear warm-up.

    At the first step each pair's scale is fixed to ``min(1, ratio * L_ref / L_pair)``, where ``L_ref`` is
    the pixel (or output-KD) loss and ``L_pair`` the pair's weighted loss at that step; a linear warm-up
    over ``warmup_iter`` then ramps it from 0. Why: a normalised FitNets L2 starts near 1 while an L1 pixel
    loss starts near 0.05, so at weight 1 the feature term outweighs the image term ~20× and drives the
    student away from the image (the pilot measured −0.91 dB). Fixing the scale once (instead of
    re-normalising every step) keeps the objective stationary, and the scale is saved for resume. Under DDP
    the two losses are averaged over the ranks first, so every rank holds the same scale.
    """

    def __init__(self, ratio: float = 0.1, warmup_iter: int = 0) -> None:
        if ratio <= 0:
            raise OptionsKeyError(f"train:recipes:balance:ratio must be > 0, got {ratio}")
        self.ratio, self.warmup_iter = float(ratio), int(warmup_iter)
        self.scales: dict[str, float] = {}

    def scale(self, name: str, term: torch.Tensor, reference: torch.Tensor | None, current_iter: int) -> float:
        if name not in self.scales:
            losses = torch.stack([(reference if reference is not None else term).detach(), term.detach()]).float()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                # DDP: from the mean over ranks, so that every rank weights the pair alike (and resumes alike)
                torch.distributed.all_reduce(losses)
                losses /= torch.distributed.get_world_size()
            ref, value = (float(v) for v in losses)
            self.scales[name] = min(1.0, self.ratio * ref / value) if value > 0 else 1.0
        warm = min(current_iter / self.warmup_iter, 1.0) if self.warmup_iter > 0 else 1.0
        return self.scales[name] * warm


class Recipes:
    """The recipes of ``train.recipes`` (each optional), as DistillModel uses them."""

    def __init__(self, opt: dict | None, scale: int, total_iter: int = 1) -> None:
        opt = dict(opt or {})
        check_recipe_keys(opt, ("mix", "upcycle", "balance", "pool", "contrast", "mixing"), "train:recipes")
        self.mix = None
        if opt.get("mix") is not None:
            mix = dict(opt["mix"])
            check_recipe_keys(mix, ("start", "end", "end_iter", "schedule"), "train:recipes:mix")
            mix.setdefault("end_iter", total_iter)
            self.mix = TargetMix(**mix)
        self.upcycle = Upcycle(dict(opt["upcycle"]), scale) if opt.get("upcycle") is not None else None
        self.pool = None
        if opt.get("pool") is not None:
            from kit.distill.pool import TeacherPool

            self.pool = TeacherPool(dict(opt["pool"]), scale)
        self.contrast = None
        if opt.get("contrast") is not None:
            from kit.distill.contrast import ContrastRecipe

            self.contrast = ContrastRecipe(dict(opt["contrast"]), scale)
        self.mixing = None
        if opt.get("mixing") is not None:
            from kit.distill.mixing import FeatureMixing

            self.mixing = FeatureMixing(dict(opt["mixing"]))
        self.balance = None
        if opt.get("balance") is not None:
            check_recipe_keys(dict(opt["balance"]), ("ratio", "warmup_iter"), "train:recipes:balance")
            self.balance = PairBalance(**opt["balance"])

    def pixel_target(self, gt: torch.Tensor, teacher: torch.Tensor, current_iter: int) -> torch.Tensor:
        """The pixel loss's target: the GT, or the GT/teacher mix."""
        return gt if self.mix is None else self.mix.target(gt, teacher, current_iter)

    def pair_scale(self, name: str, term: torch.Tensor, reference: torch.Tensor | None, current_iter: int) -> float:
        """Multiplier of a feature pair's loss (1 without balancing)."""
        return 1.0 if self.balance is None else self.balance.scale(name, term, reference, current_iter)

    def state_dict(self) -> dict:
        return {"balance_scales": dict(self.balance.scales)} if self.balance is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.balance is not None:
            self.balance.scales.update(state.get("balance_scales", {}))

"""Distillation without ground truth: which options need a GT, checked before the first step.

With an LQ-only training set (:class:`kit.data.lq_folder.LQFolderDataset`) the teacher's image is the only
target. Everything that reads the GT is refused at start-up, naming the option to remove:

.. code-block:: yaml

    datasets:
      train: {type: LQFolderDataset, dataroot_lq: datasets/gtfree_x4/train/LQ, lq_size: 32, ...}
    train:
      # no pixel_opt: there is no GT to compare with
      distill:
        output: {loss: {type: L1Loss, loss_weight: 1.0}}   # the student's image vs the teacher's
      teacher_cache: true                                   # optional: the teacher runs once per LQ image
    val:
      metrics: {psnr: {...}, ssim: {...}}   # a val set without GT reports psnr_to_teacher / ssim_to_teacher
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from basicsr.utils.registry import DATASET_REGISTRY

from kit.registry import OptionsKeyError


def train_provides_gt(opt: Mapping[str, Any]) -> bool:
    """Whether the training dataset's samples carry a ``gt`` (a dataset class says ``provides_gt = False``)."""
    train = (opt.get("datasets") or {}).get("train") or {}
    try:
        cls = DATASET_REGISTRY.get(train.get("type"))
    except KeyError:
        return True  # the dataset builder reports an unknown type with its own message
    return bool(getattr(cls, "provides_gt", True))


def check_gt_free(has_pixel_loss: bool, recipes: Any, has_output_loss: bool) -> None:
    """Refuse what needs a GT when the training set has none; the teacher's image must be a target.

    Args:
        has_pixel_loss: ``train.pixel_opt`` is set.
        recipes: The run's recipes (:class:`kit.distill.recipes.base.Recipes`): ``gt_uses()`` says what of
            the GT each one reads.
        has_output_loss: ``train.distill.output`` is set.

    Raises:
        OptionsKeyError: naming the option that reads the GT, or the missing output term.
    """
    where = "datasets:train has no ground truth (LQFolderDataset)"
    if has_pixel_loss:
        raise OptionsKeyError(
            f"{where}, but train:pixel_opt compares with the GT; remove pixel_opt: the teacher's image "
            "(train:distill:output) is the target"
        )
    uses = recipes.gt_uses()  # in the recipes' fixed order: mix, then upcycle
    if uses:
        raise OptionsKeyError(f"{where}, but {uses[0]}")
    if not has_output_loss:
        raise OptionsKeyError(
            f"{where}: give train:distill:output (e.g. {{loss: {{type: L1Loss, loss_weight: 1.0}}}}), the "
            "teacher's image as the target; feature pairs alone leave the student's image unconstrained"
        )

"""Recipes that change the data or the target — what helps distillation in restoration.

Plain output-KD and FitNets-style feature regression give about 0 dB in SR (DCKD, AAAI'25); what helps changes
the data or the target. Each recipe is one file here, registered under its key of ``train.recipes`` and built
from its options by the ``type:`` rule (the key is the type); the recipes compose with the feature pairs:

.. code-block:: yaml

    train:
      recipes:
        mix: {start: 0.0, end: 1.0}           # mix.py: pixel target = lerp(teacher, GT, alpha(iter)) (ECO)
        upcycle: {variants: [hr_crop]}        # upcycle.py: extra inputs the teacher labels (DUKD)
        balance: {ratio: 0.1}                 # balance.py: each feature pair under 10% of the pixel loss
        pool: {sources: [hr, zoom_out]}       # pool.py: inputs without a GT labelled once by the teacher
        contrast: {layer: block_1}            # contrast.py: contrastive term in the teacher's features (DCKD)
        mixing: {pair: cwd}                   # mixing.py: the teacher's tail on a teacher/student mix (MiPKD)

The interface (:class:`~kit.distill.recipes.base.Recipe`), the registry and the run's set of recipes
(:class:`~kit.distill.recipes.base.Recipes`) are in :mod:`kit.distill.recipes.base`. Importing this package
imports every module in it, so a new recipe is one file (and its test), as BasicSR finds its ``*_arch.py`` files.
"""

from __future__ import annotations

import importlib
import pkgutil


def _import_recipes() -> None:
    """Import every module of this package: each registers its recipe."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_recipes()

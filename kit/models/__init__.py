"""Models: KitSRModel (a network trained alone) and DistillModel (teacher → student)."""

from kit.models.distill_model import DistillModel
from kit.models.sr_model import KitSRModel

__all__ = ["DistillModel", "KitSRModel"]

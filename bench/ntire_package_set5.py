"""PSNR/SSIM of an NTIRE package's model file on a folder pair, the model imported as the organisers import it.

    python bench/ntire_package_set5.py SUBMISSION/ntire --lq LR/X4 --gt HR --scale 4

The package's ``models/team<ID>_<Name>.py`` is imported from the package folder (plain torch, no kit), its
``model_zoo`` weights loaded with ``strict=True``, and its outputs scored with the kit's metrics (Y, border =
scale, 8-bit outputs; ``--rgb`` for NTIRE's RGB border 4).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

import kit  # noqa: F401  (metrics and image pairing only; the model comes from the package)
from kit.images import pair_folders, read_image
from kit.metrics import psnr, quantize, ssim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("package", type=Path, help="the ntire/ folder export.py --ntire-team wrote")
    p.add_argument("--lq", required=True)
    p.add_argument("--gt", required=True)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--rgb", action="store_true", help="RGB instead of Y")
    args = p.parse_args()
    (model_file,) = (args.package / "models").glob("team*.py")
    (weights,) = (args.package / "model_zoo").glob("team*.pth")
    sys.path.insert(0, str(args.package))
    module = importlib.import_module(f"models.{model_file.stem}")
    cls = getattr(module, model_file.stem.split("_", 1)[1])
    model = cls()
    model.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    model.eval()
    border = 4 if args.rgb else args.scale
    values = []
    for _name, lq_path, gt_path in pair_folders(args.lq, args.gt):
        lq = torch.from_numpy(read_image(lq_path).transpose(2, 0, 1).copy())[None]
        gt = torch.from_numpy(read_image(gt_path).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            out = model(lq).clamp(0, 1)
        gt = gt[..., : out.shape[-2], : out.shape[-1]]
        sr_q, gt_q = quantize(out), quantize(gt)
        y = not args.rgb
        values.append((float(psnr(sr_q, gt_q, border, y)[0]), float(ssim(sr_q, gt_q, border, y)[0])))
        print(f"{Path(gt_path).name}: {values[-1][0]:.4f} dB / {values[-1][1]:.4f}")
    n = len(values)
    what = "RGB" if args.rgb else "Y"
    print(f"mean over {n}: PSNR {sum(v[0] for v in values) / n:.6f} dB, SSIM {sum(v[1] for v in values) / n:.6f} "
          f"({what}, border {border}); model {model_file.name}")  # fmt: skip


if __name__ == "__main__":
    main()

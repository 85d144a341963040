"""PSNR/SSIM of an NTIRE package's model file on a folder pair, the model imported as the organisers import it.

    python -m bench ntire_package SUBMISSION/ntire --lq LR/X4 --gt HR --scale 4

The package's ``models/team<ID>_<Name>.py`` is imported from the package folder (plain torch, no kit), its
``model_zoo`` weights loaded with ``strict=True``, and its outputs scored with the kit's metrics (Y, border =
scale, 8-bit outputs; ``--rgb`` for NTIRE's RGB border 4). ``--json NAME`` also writes the means and every
image's values to ``bench/results/NAME.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import torch

import kit  # noqa: F401  (metrics and image pairing only; the model comes from the package)
from bench.harness import write_result
from kit.images import pair_folders, read_image
from kit.metrics import psnr, quantize, ssim


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench ntire_package", description=__doc__.splitlines()[0])
    p.add_argument("package", type=Path, help="the ntire/ folder export.py --ntire-team wrote")
    p.add_argument("--lq", required=True)
    p.add_argument("--gt", required=True)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--rgb", action="store_true", help="RGB instead of Y")
    p.add_argument("--json", metavar="NAME", help="also write bench/results/NAME.json")
    args = p.parse_args(argv)
    (model_file,) = (args.package / "models").glob("team*.py")
    (weights,) = (args.package / "model_zoo").glob("team*.pth")
    spec = importlib.util.spec_from_file_location(f"models.{model_file.stem}", model_file)
    module = importlib.util.module_from_spec(spec)  # the file alone (it imports only torch), as test_demo.py does
    spec.loader.exec_module(module)
    cls = getattr(module, model_file.stem.split("_", 1)[1])
    model = cls()
    model.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    model.eval()
    border = 4 if args.rgb else args.scale
    values, names = [], []
    for _name, lq_path, gt_path in pair_folders(args.lq, args.gt):
        lq = torch.from_numpy(read_image(lq_path).transpose(2, 0, 1).copy())[None]
        gt = torch.from_numpy(read_image(gt_path).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            out = model(lq).clamp(0, 1)
        gt = gt[..., : out.shape[-2], : out.shape[-1]]
        sr_q, gt_q = quantize(out), quantize(gt)
        y = not args.rgb
        values.append((float(psnr(sr_q, gt_q, border, y)[0]), float(ssim(sr_q, gt_q, border, y)[0])))
        names.append(Path(gt_path).name)
        print(f"{names[-1]}: {values[-1][0]:.4f} dB / {values[-1][1]:.4f}")
    n = len(values)
    what = "RGB" if args.rgb else "Y"
    print(f"mean over {n}: PSNR {sum(v[0] for v in values) / n:.6f} dB, SSIM {sum(v[1] for v in values) / n:.6f} "
          f"({what}, border {border}); model {model_file.name}")  # fmt: skip
    if args.json:
        record = {"model": model_file.name, "metric": f"{what}, border {border}", "images": len(values)}
        record |= {"psnr": sum(v[0] for v in values) / n, "ssim": sum(v[1] for v in values) / n}
        record["per_image"] = [{"image": k, "psnr": v[0], "ssim": v[1]} for k, v in zip(names, values)]
        write_result(args.json, record, name="ntire_package", argv=argv, flags=args)


if __name__ == "__main__":
    main()

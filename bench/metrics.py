"""Benchmark: kit's torch PSNR/SSIM vs BasicSR's numpy reference on real photos (not a test).

    python -m bench metrics            # all colour photos bundled with scikit-image, ×4 bicubic + noise
    python -m bench metrics --repeat 5

Both implementations run side by side in one process on the same images, interleaved image by image; the
table shows the time over the set (the sum over images of each image's best of ``--repeat``), the speed-up
(numpy time / kit time) and the largest difference between the two results. The CPU is measured with torch's
default thread count and with one thread: on a machine shared with other jobs, torch's thread pool can stall.
The GPU column appears when ``torch.cuda.is_available()``. Writes ``bench/results/metrics.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

import kit  # noqa: F401  (first: adapts BasicSR to current torchvision)

# isort: split
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim

from bench.harness import timed, write_result
from kit.metrics import psnr, ssim


def load_photos() -> list[tuple[str, np.ndarray]]:
    """The colour photos shipped in ``skimage/data`` (RGB uint8), read from disk: nothing is downloaded."""
    import skimage

    folder = Path(skimage.__file__).resolve().parent / "data"
    photos = []
    for path in sorted(folder.glob("*")):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 64:
            continue
        h, w = img.shape[0] - img.shape[0] % 4, img.shape[1] - img.shape[1] % 4
        photos.append((path.stem, cv2.cvtColor(img[:h, :w], cv2.COLOR_BGR2RGB)))
    return photos


def degrade(gt: np.ndarray, seed: int) -> np.ndarray:
    """A plausible "restored" image: ×4 bicubic down-up plus mild noise, uint8."""
    h, w = gt.shape[:2]
    up = cv2.resize(cv2.resize(gt, (w // 4, h // 4), interpolation=cv2.INTER_CUBIC), (w, h), cv2.INTER_CUBIC)
    noisy = up.astype(np.float64) + np.random.default_rng(seed).normal(0, 2, up.shape)
    return np.clip(noisy.round(), 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench metrics", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs per measurement; the best is kept")
    parser.add_argument("--border", type=int, default=4)
    args = parser.parse_args(argv)

    photos = load_photos()
    pairs = [(gt, degrade(gt, i)) for i, (_, gt) in enumerate(photos)]
    pixels = sum(gt.shape[0] * gt.shape[1] for gt, _ in pairs)
    threads = torch.get_num_threads()
    print(
        f"{len(pairs)} photos from skimage/data ({pixels / 1e6:.1f} Mpixel), "
        f"border {args.border}, best of {args.repeat}"
    )

    bgr = [(np.ascontiguousarray(o[..., ::-1]), np.ascontiguousarray(g[..., ::-1])) for g, o in pairs]
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float()  # noqa: E731
    cpu = [(to_t(o), to_t(g)) for g, o in pairs]
    # (column label, tensors, torch threads, device)
    configs = [(f"cpu {threads}thr", cpu, threads, "cpu")]
    if threads > 1:  # on a busy machine torch's thread pool can lose to single-threaded numpy; show both
        configs.append(("cpu 1thr", cpu, 1, "cpu"))
    if torch.cuda.is_available():
        gpu = [(o.cuda(), g.cuda()) for o, g in cpu]
        configs.append((torch.cuda.get_device_name(0)[:12], gpu, threads, "cuda"))

    rows = []
    for label, ref_fn, kit_fn, y in (
        ("PSNR Y", calculate_psnr, psnr, True),
        ("SSIM Y", calculate_ssim, ssim, True),
        ("PSNR RGB", calculate_psnr, psnr, False),
        ("SSIM RGB", calculate_ssim, ssim, False),
    ):
        for _, tensors, _, device in configs:  # warm-up (CUDA context, cuDNN algorithm choice)
            timed(lambda t=tensors, f=kit_fn, y=y: [f(o, g, args.border, y) for o, g in t[:1]], device)
        # best[config][image]; interleaved per image, so that load from other processes hits all alike
        best = [[float("inf")] * len(pairs) for _ in range(1 + len(configs))]
        diffs = [0.0] * len(configs)
        for _ in range(args.repeat):
            for k, (o_np, g_np) in enumerate(bgr):
                t, ref = timed(lambda f=ref_fn, o=o_np, g=g_np, y=y: float(f(o, g, args.border, test_y_channel=y)))
                best[0][k] = min(best[0][k], t)
                for i, (_, tensors, n_threads, device) in enumerate(configs):
                    torch.set_num_threads(n_threads)
                    o, g = tensors[k]
                    t, val = timed(lambda f=kit_fn, o=o, g=g, y=y: float(f(o, g, args.border, y)), device)
                    best[i + 1][k] = min(best[i + 1][k], t)
                    diffs[i] = max(diffs[i], abs(val - ref))
                torch.set_num_threads(threads)
        best = [sum(per_image) for per_image in best]
        rows.append((label, best, diffs))

    head = f"{'metric':<9} {'numpy ms':>9}" + "".join(f" | {name + ' ms':>15} {'speed-up':>8}" for name, *_ in configs)
    print(head + "   max |kit - numpy|")
    print("-" * (len(head) + 20))
    for label, best, diffs in rows:
        cells = "".join(f" | {t * 1e3:>15.1f} {best[0] / t:>7.2f}x" for t in best[1:])
        print(f"{label:<9} {best[0] * 1e3:>9.1f}{cells}   {max(diffs):.1e}")
    totals = [sum(r[1][i] for r in rows) for i in range(1 + len(configs))]
    cells = "".join(f" | {t * 1e3:>15.1f} {totals[0] / t:>7.2f}x" for t in totals[1:])
    print(f"{'all four':<9} {totals[0] * 1e3:>9.1f}{cells}")
    names = [name for name, *_ in configs]
    record = {
        "photos": len(pairs),
        "megapixels": pixels / 1e6,
        "columns": names,
        "rows": [
            {"metric": label, "numpy_ms": best[0] * 1e3, "kit_ms": dict(zip(names, (t * 1e3 for t in best[1:])))}
            | {"max_abs_diff": dict(zip(names, diffs))}
            for label, best, diffs in rows
        ],
        "all_four": {"numpy_ms": totals[0] * 1e3, "kit_ms": dict(zip(names, (t * 1e3 for t in totals[1:])))},
    }
    write_result("metrics", record, name="metrics", argv=argv, flags=args)


if __name__ == "__main__":
    main()

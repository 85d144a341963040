"""Start-up checks of the datasets named in the options: folders exist, every image decodes, pairs fit the scale.

Run before anything of the experiment is written, so that a dataset the training (or validation) would fail
on, or measure wrongly, is refused with the file and the options key: validation pairs whose sizes do not
fit the scale used to give 12.80 dB without a word, and a GT smaller than ``gt_size`` failed at the first step.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from kit.images import IMAGE_EXTENSIONS, list_images


def check_folder(folder: str | None, where: str) -> int:
    """Raise naming the options key when ``folder`` is missing/empty or holds an undecodable image."""
    return len(image_sizes(folder, where))


def image_sizes(folder: str | None, where: str) -> dict[Path, tuple[int, int]]:
    """``{file: (width, height)}`` of every image of ``folder`` (each one decoded); ``{}`` for none/lmdb."""
    if folder is None:
        return {}
    path = Path(folder)
    if path.suffix == ".lmdb":
        if not (path / "meta_info.txt").is_file():
            raise FileNotFoundError(f"{where}: lmdb '{path}' has no meta_info.txt; build it with BasicSR's scripts")
        return {}
    if not path.is_dir():
        raise FileNotFoundError(f"{where}: folder '{path}' does not exist; fix the path in the options")
    files = list_images(path)
    if not files:
        raise FileNotFoundError(f"{where}: folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    sizes = {}
    for file in files:
        try:
            with Image.open(file) as img:
                sizes[file] = img.size
                img.verify()
        except Exception as err:
            raise ValueError(f"{where}: image '{file}' cannot be decoded ({err}); remove or replace it") from err
    return sizes


def check_datasets(opt: dict) -> None:
    """Check every dataset of the options before any training work starts (folders, pairs, sizes)."""
    for phase, dataset in opt["datasets"].items():
        where = f"datasets:{phase}"
        gt = image_sizes(dataset.get("dataroot_gt"), f"{where}:dataroot_gt")
        lq = image_sizes(dataset.get("dataroot_lq"), f"{where}:dataroot_lq")
        scale = int(dataset.get("scale", opt.get("scale", 1)) or 1)
        train = phase == "train"
        gt_size = dataset.get("gt_size")
        if train and gt_size is not None:
            if int(gt_size) % scale:
                raise ValueError(
                    f"{where}:gt_size {gt_size} is not a multiple of the scale {scale}; use e.g. "
                    f"{int(gt_size) // scale * scale or scale}"
                )
            small = [(f, s) for f, s in gt.items() if min(s) < int(gt_size)]
            if small:
                f, (w, h) = small[0]
                raise ValueError(
                    f"{where}: image '{f}' ({w}x{h}) is smaller than gt_size {gt_size} ({len(small)} such image(s)); "
                    "lower gt_size or remove the small images"
                )
        if gt and lq and dataset.get("meta_info_file") is None:
            check_pairs(gt, lq, scale, dataset.get("filename_tmpl", "{}"), where, exact=train)


def check_pairs(
    gt: dict[Path, tuple[int, int]], lq: dict[Path, tuple[int, int]], scale: int, tmpl: str, where: str, exact: bool
) -> None:
    """Every GT has its LQ (BasicSR's ``filename_tmpl`` naming) and ``GT = LQ × scale``.

    ``exact``: training crops need the exact size; validation crops the GT to ``LQ × scale``, so a GT up to
    ``scale - 1`` pixels larger (the bicubic LR of a size that is not a multiple of the scale) is accepted.
    """
    by_stem = {p.stem: (p, s) for p, s in lq.items()}
    for gt_path, (gw, gh) in gt.items():
        stem = tmpl.format(gt_path.stem)
        if stem not in by_stem:
            raise FileNotFoundError(
                f"{where}: '{gt_path.name}' in dataroot_gt has no partner '{stem}.*' in dataroot_lq; "
                "pairs are matched by file name"
            )
        lq_path, (lw, lh) = by_stem[stem]
        fits = (gw, gh) == (lw * scale, lh * scale) if exact else (gw // scale, gh // scale) == (lw, lh)
        if not fits:
            raise ValueError(
                f"{where}: '{gt_path.name}' is {gw}x{gh} but its LQ '{lq_path.name}' is {lw}x{lh}, which at scale "
                f"{scale} should be {gw // scale}x{gh // scale}; check the scale or the LQ folder"
            )
    if len(lq) != len(gt):
        extra = sorted(set(by_stem) - {tmpl.format(p.stem) for p in gt})
        raise FileNotFoundError(
            f"{where}: dataroot_lq holds {len(lq)} images, dataroot_gt {len(gt)}; unpaired LQ: {', '.join(extra[:3])}"
        )

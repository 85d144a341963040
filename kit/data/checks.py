"""Start-up checks of the datasets named in the options: folders exist, every image decodes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from kit.images import IMAGE_EXTENSIONS


def check_folder(folder: str | None, where: str) -> int:
    """Raise naming the options key when ``folder`` is missing/empty or holds an undecodable image."""
    if folder is None:
        return 0
    path = Path(folder)
    if path.suffix == ".lmdb":
        if not (path / "meta_info.txt").is_file():
            raise FileNotFoundError(f"{where}: lmdb '{path}' has no meta_info.txt; build it with BasicSR's scripts")
        return 0
    if not path.is_dir():
        raise FileNotFoundError(f"{where}: folder '{path}' does not exist; fix the path in the options")
    files = [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise FileNotFoundError(f"{where}: folder '{path}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    for file in files:
        try:
            with Image.open(file) as img:
                img.verify()
        except Exception as err:
            raise ValueError(f"{where}: image '{file}' cannot be decoded ({err}); remove or replace it") from err
    return len(files)


def check_datasets(opt: dict) -> None:
    """Check every dataset folder of the options before any training work starts."""
    for phase, dataset in opt["datasets"].items():
        for key in ("dataroot_gt", "dataroot_lq"):
            check_folder(dataset.get(key), f"datasets:{phase}:{key}")

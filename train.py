"""Train a restoration network, or distil a teacher into a student: ``python train.py -opt options/distill.yml``."""

import kit  # noqa: F401  (adapts BasicSR and registers the kit's classes)
from kit.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())

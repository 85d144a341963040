"""Train a restoration network, or distil a teacher into a student: ``python train.py -opt options/distill.yml``.

The arguments are parsed before torch is imported (``--help`` answers at once); :func:`kit.cli.train.main` then
adapts BasicSR and registers the kit's classes (``kit.install``).
"""

from kit.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())

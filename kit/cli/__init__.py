"""The kit's command lines: ``kit-eval`` (:mod:`kit.cli.eval`), ``kit-inspect`` (:mod:`kit.cli.inspect`) and
``kit-fit`` (:mod:`kit.cli.fit`).

``kit-data`` is :mod:`kit.data.bundled`; ``train.py`` and ``export.py`` stand at the top of the repository.
Each ``main(argv)`` returns the exit status; the entry points are in ``pyproject.toml``.
"""

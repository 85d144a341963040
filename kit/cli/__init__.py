"""The kit's command lines: ``kit-eval`` (:mod:`kit.cli.eval`), ``kit-inspect`` (:mod:`kit.cli.inspect`),
``kit-fit`` (:mod:`kit.cli.fit`), ``kit-data`` (:mod:`kit.cli.data`), ``export.py`` (:mod:`kit.cli.export`) and
``python -m kit.cli.fixed_degraded`` (:mod:`kit.cli.fixed_degraded`).

``train.py`` and ``export.py`` stand at the top of the repository and call into here.
Each ``main(argv)`` returns the exit status; the entry points are in ``pyproject.toml``.
"""

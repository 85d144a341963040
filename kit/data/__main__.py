"""``python -m kit.data``: build the bundled photo dataset (same as ``kit-data``)."""

from kit.cli.data import main

main()

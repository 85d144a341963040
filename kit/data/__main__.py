"""``python -m kit.data``: build the bundled photo dataset (same as ``kit-data``)."""

from kit.data.bundled import main

main()

"""Export the student of an options file to a verified ONNX submission: ``python export.py -opt options/distill.yml``.

See :mod:`kit.cli.export` for the flags and :mod:`kit.export.submission` for the checks. The arguments are parsed
before torch is imported.
"""

import sys

from kit.cli.export import main

if __name__ == "__main__":
    sys.exit(main())

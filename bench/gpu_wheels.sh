#!/usr/bin/env bash
# Wheels that bench/gpu_check.sh needs on the GPU machine, which has torch, OpenCV and scikit-image but not
# BasicSR: built here into .whl/ (git ignores it). BasicSR 1.4.2 is a source release on PyPI; its wheel is
# pure Python, so one built here installs there (Python 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mkdir -p .whl
"$PYTHON" -m pip wheel -q --no-deps -w .whl "basicsr==1.4.2"
ls -l .whl

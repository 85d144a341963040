"""``python -m bench <name> [flags]`` runs a benchmark; ``--list`` lists them; ``render`` writes the tables."""

from __future__ import annotations

import importlib
import sys

from bench import BENCHMARKS

USAGE = (
    "usage: python -m bench <name> [flags]   (python -m bench <name> --help for its flags)\n"
    "       python -m bench --list\n"
    "       python -m bench render [--check]   (the tables and plots of README.md and docs/ from bench/results/)"
)


def listing() -> str:
    """One line per benchmark."""
    width = max(map(len, BENCHMARKS))
    lines = [f"{name:<{width}}  {summary}" for name, (_, summary) in BENCHMARKS.items()]
    lines.append(f"{'render':<{width}}  the tables and plots of README.md and docs/ from bench/results/*.json")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the benchmark named first in ``argv``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "--list":
        print(listing())
        return 0
    if name == "render":
        from bench import render

        return render.main(rest)
    if name not in BENCHMARKS:
        print(f"python -m bench: no benchmark '{name}'; choose from: {', '.join(BENCHMARKS)}, render", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{BENCHMARKS[name][0]}")
    result = module.main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run ``train.py``/``export.py`` in child processes forked from one warm process (kit already imported).

A fault case is a run of the real entry point in its own process: its own exit code, stderr, cwd and
environment. Importing torch and BasicSR takes ~5 s of CPU per process; forking from a process that has
imported them (and run no torch op, so no thread pool exists to break a fork, as multiprocessing's
forkserver) makes each case cost what the run itself costs. ``tests/test_faults.py`` also runs a few cases
through ``python train.py`` itself, to show the two agree.

Protocol: one JSON request per line on stdin ``{"tool", "argv", "cwd", "env", "stdout", "stderr"}``, one JSON
reply per line on stdout ``{"rc"}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _child(request: dict) -> None:
    if request.get("fsize"):  # a file size limit: writes beyond it fail like a full disk (Python ignores SIGXFSZ)
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    sys.argv = [request["tool"], *request["argv"]]
    code = 1
    try:
        if request["tool"] == "train.py":
            from kit.cli.train import main

            code = main(request["argv"])
        else:
            from kit.cli.export import main

            code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    reply = os.fdopen(os.dup(1), "w")  # the replies' own channel: nothing the imports print can mix in
    os.dup2(2, 1)
    import kit  # noqa: F401  (the warm part: torch, BasicSR, the kit's registries)

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        reply.write(json.dumps({"rc": rc}) + "\n")
        reply.flush()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class WarmRunner:
    """The client: ``run("train.py", argv, cwd)`` returns a :class:`Result` like ``subprocess.run`` would."""

    def __init__(self, scratch: Path) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO))
        self.scratch = scratch
        self.count = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.warm_runner"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, tool: str, argv: list[str], cwd: Path = REPO, env: dict | None = None, fsize: int | None = None
    ) -> Result:
        self.count += 1
        out, err = self.scratch / f"{self.count}.out", self.scratch / f"{self.count}.err"
        request = {"tool": tool, "argv": argv, "cwd": str(cwd), "env": env or {}, "fsize": fsize}
        request |= {"stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the warm runner died")
        return Result(json.loads(line)["rc"], out.read_text(), err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


if __name__ == "__main__":
    serve()

"""The training run: ``train.py`` → :func:`kit.cli.train.main` → :func:`run_training`.

Each stage is a function of one :class:`kit.run.context.Run`, which holds what the stages before it made; the
loop reads top to bottom (nanoGPT's ``train.py``). BasicSR's builders, datasets and loggers do the work; owning
the loop (instead of patching ``basicsr.train``) is what fixes, in one readable place, resume without a GPU,
``--auto_resume`` from any cwd, resume that continues mid-epoch with the same random streams, gloo DDP on CPU, a
teacher that is never re-pointed on resume, and a failed start that touches nothing.

A walk of ``train.py -opt options/distill.yml`` (the main job)::

    stages.run_training   the stages in order
    startup               options (kit.options, checked against kit.schema), GPUs, DDP, seed, console log (kept
                          in memory until the experiment folder exists: logs); bundled data built if missing,
                          datasets, val.metrics, model_type, teacher cache
    stages.train_teacher  path.teacher_recipe trained first when path.pretrain_network_t is missing (a run of its own)
    stages.build          resume.find_resume (read only; a corrupt newest state falls back); teachers loaded once;
                          the model (its constructor checks, the pairs' dry forward); loaders (the teacher cache);
                          and only then, when everything that can fail at start-up has passed,
                          experiment.open_experiment (old folder moved aside, or the resumed one cleaned of killed
                          writes; the log file); resume.continue_from a state (model, divergence watch, position)
    loop.train_loop       feed, step, log, save (weights, then state.ResumeState with the random streams),
                          validate; SIGINT/SIGTERM save and stop (interrupts)
    finish.finish         final state + net_g_latest, final validation, DDP weight check (ddp), curves.png (plots)

Modules, one concept each: ``context`` (the Run), ``startup``, ``stages``, ``loaders``, ``experiment``, ``loop``,
``finish``; ``state`` (the resume-state format), ``resume`` (finding a state and continuing from it), ``rng``
(random streams), ``lock`` (a run owns its experiment folder), ``interrupts``, ``divergence``, ``logs``, ``ddp``,
``plots``.
"""

from __future__ import annotations

from kit.run.context import Run
from kit.run.stages import run_training

__all__ = ["Run", "run_training"]

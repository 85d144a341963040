"""Distillation: what the student learns from the teacher beyond its image.

- :mod:`kit.distill.pairs` — feature pairs: the recorder (forward hooks, ``"path#k"`` specs), connectors, and the
  wiring of ``train.distill`` (one entry = one pair: student path, teacher path, connector, loss).
- :mod:`kit.distill.recipes` — ``train.recipes``: training recipes that change the target or the data (one file
  each, built by the ``type:`` rule from their options key).
- :mod:`kit.distill.gt_free` — what a run without ground truth must leave out, checked at start-up.

The offline teacher cache (``train.teacher_cache``) lives with the teachers: :mod:`kit.teachers.cache`.
"""

"""Teachers: load one or several frozen teacher networks (declared architecture, or detected by spandrel).

```python
from kit.teachers import load_teacher, teachers_from_options, weighted_mean_output

net = load_teacher({"type": "AutoTeacher"}, "teacher.safetensors", scale=4)       # frozen, eval
teachers = teachers_from_options(opt)            # {name: LoadedTeacher(net, weight, info)}
target = weighted_mean_output({n: t.net(lq) for n, t in teachers.items()}, {n: t.weight for n, t in teachers.items()})
```
"""

from __future__ import annotations

from kit.teachers.auto import AUTO_TYPE, AutoTeacher, detect_from_state
from kit.teachers.errors import TeacherError
from kit.teachers.loading import TeacherInfo, declared_in_channels, freeze, load_teacher, load_teacher_with_info
from kit.teachers.multi import (
    LoadedTeacher,
    check_teacher_files,
    load_teachers,
    load_teachers_frozen_rng,
    teacher_entries,
    teachers_from_options,
    weighted_mean_output,
)

__all__ = [
    "AUTO_TYPE",
    "AutoTeacher",
    "LoadedTeacher",
    "check_teacher_files",
    "TeacherError",
    "TeacherInfo",
    "declared_in_channels",
    "detect_from_state",
    "freeze",
    "load_teacher",
    "load_teacher_with_info",
    "load_teachers",
    "load_teachers_frozen_rng",
    "teacher_entries",
    "teachers_from_options",
    "weighted_mean_output",
]

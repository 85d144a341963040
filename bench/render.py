"""The result tables and plots of README.md and docs/*.md, from ``bench/results/*.json`` only.

    python -m bench render            # rewrite every block and plot
    python -m bench render --check    # change nothing; exit 1 naming every block out of date, unknown or without JSON

In a page, a generated block sits between ``<!-- results:ID -->`` and ``<!-- /results:ID -->`` lines; :data:`BLOCKS`
maps each ID to the function that renders it. Row labels and emphasis are presentation and live here; every number
comes from a JSON file. Images are linked relative to the page.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
from collections.abc import Callable
from pathlib import Path

from bench.harness import RESULTS, ROOT, read_result

PAGES = ("README.md", "docs")
BLOCK = re.compile(r"^<!-- results:([\w-]+) -->\n(.*?)^<!-- /results:\1 -->$", re.S | re.M)


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def _image(page: Path, name: str, alt: str) -> str:
    return f"![{alt}]({Path(os.path.relpath(RESULTS / name, page.parent)).as_posix()})"


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


SHIPPED = {
    "distill.yml": "`distill.yml` (`cwd_all`, lr 2e-3; EDSR teacher)",
    "distill_pretrained.yml": "`distill_pretrained.yml` (`cwd_all` + pool, lr 2e-3; official SPAN ×4)",
    "distill_naf_denoise.yml": "`distill_naf_denoise.yml`",
    "distill_repsr.yml": "`distill_repsr.yml`",
}
SHIPPED_ORDER = ("distill.yml", "distill_pretrained.yml", "distill_repsr.yml", "distill_naf_denoise.yml")


def shipped(page: Path) -> str:
    """Each shipped distillation file against its scratch twin (``recipes --shipped``)."""
    rows = read_result("shipped")["rows"]
    out = []
    for name in sorted(rows, key=lambda n: (SHIPPED_ORDER + (n,)).index(n)):
        row = rows[name]
        sc, di = statistics.mean(row["scratch"]), statistics.mean(row["distill"])
        task = {"x4 SR": "×4 SR", "denoise": "denoise σ 25"}.get(row["task"], row["task"])
        out.append(
            [SHIPPED.get(name, f"`{name}`"), task, row["metric"], f"{sc:.3f} ± {_spread(row['scratch']):.3f}"]
            + [f"{di:.3f} ± {_spread(row['distill']):.3f}", _bold(f"{di - sc:+.3f}", di - sc > 0.1)]
        )
    header = ["options file", "task", "metric", "scratch (`student*.yml`)", "distilled", "Δ"]
    return _table(header, ["---"] * 3 + ["---:"] * 3, out)


RECIPES_CPU = {
    "scratch": "scratch (`options/student.yml`)",
    "output_kd": "output-KD (L1 to the teacher's image)",
    "mix": "mix (pixel target lerp(teacher, GT, α), α 0→1)",
    "upcycle": "upcycle (DUKD: HR crops and zoomed-out LR labelled by the teacher)",
    "multi_teacher": "multi-teacher (two teacher snapshots, mean image)",
    "fitnets_seed": "the seed's FitNets (output-KD + normalised L2 ×1, 1×1 conv+BN+ReLU)",
    "fitnets_balanced": "FitNets, balanced (≤ 10% of the pixel loss)",
    "cwd_balanced": "output-KD + CWD pair (last block), balanced",
    "mix+upcycle": "mix + upcycle",
}
NOTES = {"cwd_balanced": " — the default until `cwd_all`"}


def _by_recipe(runs: list[dict]) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for run in runs:
        by.setdefault(run["recipe"], []).append(run)
    return by


def recipes_cpu(page: Path) -> str:
    """The cpu setting's recipes: mean ± spread over seeds, Δ vs scratch; the best row in bold."""
    by = _by_recipe(read_result("recipes_cpu")["runs"])
    base = statistics.mean(x["psnr"] for x in by["scratch"])
    best = max(by, key=lambda r: statistics.mean(x["psnr"] for x in by[r]))
    out = []
    for recipe, rs in by.items():
        psnrs, ssims = [x["psnr"] for x in rs], [x["ssim"] for x in rs]
        mean, top = statistics.mean(psnrs), recipe == best
        delta = "" if recipe == "scratch" else f"{mean - base:+.3f}".replace("-", "−")
        out.append(
            [_bold(RECIPES_CPU.get(recipe, recipe), top) + NOTES.get(recipe, "")]
            + [_bold(f"{mean:.3f} ± {_spread(psnrs):.3f}", top), _bold(delta, top or delta.startswith("−"))]
            + [
                f"{statistics.mean(ssims):.4f} ± {_spread(ssims):.4f}",
                f"{statistics.mean(x['wall_s'] for x in rs):.0f}",
            ]
        )
    header = ["recipe", "PSNR-Y (dB)", "Δ vs scratch", "SSIM-Y", "wall / run (s)"]
    table = _table(header, ["---"] + ["---:"] * 4, out)
    return table + "\n\n" + _image(page, "recipes_cpu.png", "validation PSNR against the step for every recipe")


def _real_row(key: str, row: dict) -> list[str]:
    delta = "" if row["delta"] is None else f"{row['delta']:+.3f} ± {row['delta_spread']:.3f}"
    gap = "" if row["gap_closed"] is None else f"{100 * row['gap_closed']:.0f}%"
    name = f"**{key}** (baseline)" if row["baseline"] else key
    return [name, ",".join(map(str, row["seeds"])), f"{row['psnr']:.3f} ± {row['psnr_spread']:.3f}", delta, gap]


def recipes_real(student: str, steps: int) -> Callable[[Path], str]:
    """The block of one student and budget of the real setting (the report's table, from its numbers)."""

    def render(page: Path) -> str:
        data = read_result("recipes_real")
        refs, rows = data["references"], data["tables"][f"{student}_{steps}"]
        out = []
        for key, row in rows.items():
            s5, d5 = row["set5_psnr"], row["set5_delta"]
            out.append(
                _real_row(key, row)
                + [f"{row['ssim']:.4f}", "" if s5 is None else f"{s5:.3f}", "" if d5 is None else f"{d5:+.3f}"]
                + [f"{row['wall_s']:.0f}"]
            )
        t5, b5 = refs.get("teacher_set5_psnr"), refs.get("bicubic_set5_psnr")
        t5, b5 = ("–" if v is None else f"{v:.3f}" for v in (t5, b5))
        header = ["recipe", "seeds", "val PSNR-Y", "Δ vs scratch (± spread)", "gap closed", "val SSIM-Y"]
        header += ["Set5 PSNR-Y", "Set5 Δ", "wall / run (s)"]
        text = _table(header, ["---"] * 2 + ["---:"] * 7, out)
        text += f"\n| teacher | | {refs['teacher_val_psnr']:.3f} | | 100% | {refs['teacher_val_ssim']:.4f} | {t5} | | |"
        text += f"\n| bicubic | | {refs['bicubic_val_psnr']:.3f} | | | {refs['bicubic_val_ssim']:.4f} | {b5} | | |"
        return text + "\n\n" + _image(page, f"recipes_real_{student}_{steps}.png", "curves")

    return render


def students(page: Path) -> str:
    """Every student family, default and max; latencies of a loaded run as ratios where the quiet one has none."""
    quiet, loaded = read_result("students_cpu")["rows"], read_result("students_cpu_loaded")["rows"]
    ratio = {r["setting"]: r["cpu_ms"] / loaded[0]["cpu_ms"] for r in loaded}
    out = []
    for r in quiet:
        ms = f"{r['cpu_ms']:.0f}" if r["cpu_ms"] is not None else f"{ratio[r['setting']]:.2f}× row 1 ¹"
        under = "yes" if r["params_train"] < 5e6 else "fused only" if r["params_deployed"] < 5e6 else "NO"
        out.append(
            [STUDENTS.get(r["setting"], r["setting"]), f"{r['params_train'] / 1e6:.3f}M"]
            + [f"{r['params_deployed'] / 1e6:.3f}M", f"{r['gmacs_256']:.1f}", ms, under]
        )
    header = ["setting", "params (train)", "params (deployed)", "GMACs @256²", "CPU ms @128²", "under 5M"]
    return _table(header, ["---"] + ["---:"] * 4 + [":---:"], out)


STUDENTS = {
    "RLFNStudent ×4 default (52 ch, 6 blocks)": "`RLFNStudent` ×4 default (52 ch, 6 blocks; RLFN, NTIRE 2022 ESR)",
    "RLFNStudent ×4 max (128 ch, 10 blocks)": "`RLFNStudent` ×4 max (128 ch, 10 blocks)",
    "RepSRStudent ×4 default (ECBSR-M16C64)": "`RepSRStudent` ×4 default (ECBSR-M16C64: branches fused into 3×3 convs)",
    "RepSRStudent ×4 max (128 ch, 32 blocks)": "`RepSRStudent` ×4 max (128 ch, 32 blocks)",
    "NAFStudent ×1 default (C16, enc 1-1-1-8)": "`NAFStudent` ×1 default (NAFNet C16, enc 1-1-1-8)",
    "NAFStudent ×1 max (NAFNet-C16-L28)": "`NAFStudent` ×1 max (NAFNet-C16-L28, AIM 2025 deblur reference)",
    "SPANStudent ×4 default (official spanx4_ch48: 48 ch, 6 blocks)": (
        "`SPANStudent` ×4 default (official spanx4_ch48: 48 ch, 6 blocks; SPAN, NTIRE 2024 ESR)"
    ),
    "SPANStudent ×4 max (200 ch, 4 blocks; kit-fit's pick under 5M)": (
        "`SPANStudent` ×4 max (200 ch, 4 blocks: `kit-fit`'s pick under 5M)"
    ),
}


def teacher_cache(page: Path) -> str:
    """Live vs cached teacher: step times (``teacher_cache``) and the Δ of two recipes (``recipes``)."""
    steps = read_result("teacher_cache_cpu_steps")
    rows, out = steps["rows"], []
    for i, r in enumerate(rows):
        name = r["teacher"]
        label = name.replace(" (shipped)", " teacher (shipped)") if "(shipped)" in name else f"{name} teacher"
        label += "" if "(shipped)" in name else f" ({r['params_m']:.1f}M)"
        cached = f"{r['cached_ms']:.1f} ms (**{r['live_ms'] / r['cached_ms']:.1f}×**)"
        command = "`python -m bench teacher_cache`" if i == 0 else "same run"
        out.append([f"one output-KD step, {label}", f"{r['live_ms']:.1f} ms", cached, command])
    builds = " / ".join(f"{r['build_s']:.1f} s" for r in rows)
    pays = " / ".join(r["pays_off"].split()[0] for r in rows)
    photos = f"building the cache over the {steps['images']} training photos"
    out.append([photos, "", f"{builds}: paid back after {pays} steps", "same run"])
    by = _by_recipe(read_result("teacher_cache_cpu")["runs"])
    base = statistics.mean(x["psnr"] for x in by["scratch"])

    def cell(recipe: str) -> str:
        psnrs = [x["psnr"] for x in by[recipe]]
        wall = statistics.mean(x["wall_s"] for x in by[recipe])
        return f"{statistics.mean(psnrs) - base:+.3f} ± {_spread(psnrs):.3f} ({wall:.0f} s / run)"

    for i, recipe in enumerate(("output_kd", "mix")):
        seeds = ", ".join(map(str, sorted({x["seed"] for x in by[recipe]})))
        where = "`bench/results/teacher_cache_cpu.json`" if i == 0 else "same run"
        what = f"{recipe}, 600 steps, Δ PSNR-Y vs scratch (seeds {seeds})"
        out.append([what, cell(recipe), cell(f"{recipe}_cached"), where])
    return _table(["", "live teacher", "cached", "file"], ["---", "---:", "---:", "---"], out).replace("|  |", "| |")


def gtfree(page: Path) -> str:
    """Real-ESRGAN into a small student without GT: to-the-teacher scores, sizes, latency; the comparison picture."""
    r = read_result("gtfree_realesrgan_cpu")
    y, p, g = r["means_to_teacher_y"], r["params"], r["gmacs_256"]
    s_wins = y["student"]["psnr"] > y["bicubic"]["psnr"]
    steps = (r.get("training") or {}).get("iters")
    student = f"student (distilled without GT, {steps} steps)" if steps else "student (distilled without GT)"
    teacher_s = r["teacher_torch_seconds_per_crop"]
    rows = [
        [student, f"{p['student'] / 1e6:.3f}M", f"{g['student']:.1f}", f"{r['onnx_latency_ms']['student']:.0f}"]
        + [_bold(f"{y['student']['psnr']:.3f}", s_wins), _bold(f"{y['student']['ssim']:.4f}", s_wins)],
        ["bicubic (MATLAB imresize): the baseline", "0", "–", "–"]
        + [_bold(f"{y['bicubic']['psnr']:.3f}", not s_wins), _bold(f"{y['bicubic']['ssim']:.4f}", not s_wins)],
        ["teacher (Real-ESRGAN x4plus)", f"{p['teacher'] / 1e6:.3f}M", f"{g['teacher']:.1f}"]
        + [f"not run: {teacher_s:.0f} s per 96² crop in PyTorch", "reference", "reference"],
    ]
    size = r["onnx_latency_ms"]["size"]
    header = ["model", "params", "GMACs @256²", f"onnxruntime CPU ms @{size}² (1 thread)", "PSNR-Y to teacher"]
    table = _table(header + ["SSIM-Y to teacher"], ["---"] + ["---:"] * 5, rows)
    alt = "input / bicubic / student / teacher crops of three RealSRSet images, PSNR-Y to the teacher"
    return table + "\n\n" + _image(page, "gtfree_realesrgan_compare.png", alt)


FORMATS = {
    "distill.yml": (
        "`distill.yml` (RLFNStudent 32×4, bicubic residual), the main job's checkpoint (`cwd_all`, lr 2e-3; "
        "re-measured on its own, `--only distill.yml`)"
    ),
    "distill_repsr.yml": "`distill_repsr.yml` (RepSRStudent, fused), its checkpoint",
    "distill_naf_denoise.yml": "`distill_naf_denoise.yml` (NAFStudent, σ 25), its checkpoint",
    "student_span.yml": "`student_span.yml` (SPANStudent, fused), the official SPAN ×4 weights",
}


def formats(page: Path) -> str:
    """Each student exported with INT8: counts, PSNR fp32/INT8, onnxruntime latency (the main job's row in bold)."""
    out = []
    for r in read_result("formats")["rows"]:
        main_job = r["options"] == "distill.yml"
        out.append(
            [FORMATS.get(r["options"], f"`{r['options']}` ({r['architecture']})"), f"{r['params']:,d}"]
            + [f"{r['gflops']:.2f}", f"{r['activations_m']:.2f}", str(r["num_conv"]), f"{r['fp32_psnr']:.3f}"]
            + [f"{r['int8_psnr']:.3f}", _bold(f"{r['drop']:+.3f}", r["drop"] > 0.1)]
            + [f"{r['fp32_psnr_rgb4']:.3f} / {r['int8_psnr_rgb4']:.3f}", f"{r['fp32_ms']:.0f} ms"]
            + [f"{r['int8_ms']:.0f} ms", _bold(f"{r['speedup']:.2f}×", main_job)]
        )
    header = ["options (student), weights", "params", "GFLOPs (fvcore) @256²", "activations (M)", "Conv2d"]
    header += ["PSNR fp32", "PSNR INT8", "drop", "PSNR-RGB b4 fp32 / INT8", "ORT CPU fp32", "ORT CPU INT8", "speedup"]
    return _table(header, ["---"] + ["---:"] * 11, out)


def formats_sweep(page: Path) -> str:
    """INT8 settings side by side on one fp32 file (the RLFN student's sweep)."""
    out = []
    for r in read_result("formats_sweep_student")["rows"]:
        out.append(
            [r["method"], str(r["crops"]), "+".join(r["keep_float"]) or "none", str(r["threads"])]
            + [f"{r['int8_psnr']:.3f}", f"{r['drop']:+.3f}", f"{r['fp32_ms']:.0f}", f"{r['int8_ms']:.0f}"]
            + [f"{r['fp32_ms'] / r['int8_ms']:.2f}×" if "speedup" not in r else f"{r['speedup']:.2f}×"]
        )
    header = ["calibration", "crops", "kept float", "threads", "PSNR INT8", "drop", "fp32 ms", "INT8 ms", "speedup"]
    return _table(header, ["---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:"], out)


SPAN_SET5 = {
    "teacher": (
        "the teacher: spandrel's SPAN (`kit-eval --teacher` with `network_t: {type: AutoTeacher}` and "
        "`path.pretrain_network_t` set to the same file)"
    ),
    "student_torch": "`SPANStudent` in PyTorch (`kit-eval --checkpoint`)",
    "student_onnx": "`SPANStudent` exported by `export.py` (fused, ONNX in onnxruntime, `kit-eval --onnx`)",
    "ntire_package": (
        "the NTIRE package (`models/team01_SpanNtire.py` + `model_zoo` weights, imported as the organisers do, "
        "`python -m bench ntire_package`)"
    ),
}


def span_set5(page: Path) -> str:
    """The official SPAN x4 weights on Set5 through every path of the kit."""
    rows = [[SPAN_SET5[r["model"]], f"{r['psnr']:.4f}", f"{r['ssim']:.4f}"] for r in read_result("span_set5")["rows"]]
    return _table(["SPAN x4 ch48, official weights", "PSNR-Y (dB)", "SSIM-Y"], ["---", "---:", "---:"], rows)


def performance(page: Path) -> str:
    """What each benchmark measured, one row per command."""
    rows = [[r["what"], f"`{r['command']}`", r["measured"]] for r in read_result("performance")["rows"]]
    return _table(["what", "command", "measured (2-core CPU)"], ["---"] * 3, rows)


COMPILE_STEPS = {
    "student step (KitSRModel)": "student alone (`RLFNStudent` 32×4, `KitSRModel`)",
    "distillation step (DistillModel, shipped)": (
        "distillation step (`DistillModel`, EDSR 64×8 teacher, one CWD pair: the shipped recipe when measured)"
    ),
}


def compile_block(page: Path) -> str:
    """Compiled ÷ eager per step, median (min–max) over repeats, one column per run."""
    data = read_result("compile_cpu")
    runs, out = data["runs"], []
    for i, step in enumerate(data["steps"]):
        diff = step["max_rel_loss_diff"]
        cells = [COMPILE_STEPS.get(step["step"], step["step"]), step["compile"], "0" if diff == 0 else f"{diff:.1e}"]
        for run in runs:
            r = run["rows"][i]
            median = _bold(f"{r['ratio_median']:.3f}", "dry run" not in run["label"])
            cells.append(f"{median} ({r['ratio_min']:.3f}–{r['ratio_max']:.3f})")
        out.append(cells)
    header = ["step (shipped options)", "compile time, 1st step over eager", "max rel. loss difference, 3 steps"]
    header += [
        ("compiled ÷ eager, median (min–max) over repeats: " if i == 0 else "") + run["label"]
        for i, run in enumerate(runs)
    ]
    return _table(header, ["---"] + ["---:"] * (len(header) - 1), out)


def loader(page: Path) -> str:
    """The loader's samples/s by workers, one column per run (the fastest of each in bold)."""
    runs = read_result("loader_cpu")["runs"]
    first, out = runs[0]["loader"], []
    for i, row in enumerate(first):
        w = row["workers"]
        cells = [f"{w} (in the training process)" if w == 0 else str(w)]
        for k, run in enumerate(runs):
            r = run["loader"][i]
            top = r["samples_s"] == max(x["samples_s"] for x in run["loader"])
            rng = f" ({r['min']:,.0f}–{r['max']:,.0f})" if r.get("min") is not None else ""
            cells.append(_bold(f"{r['samples_s']:,.0f}", top) + rng)
            if k == 0:
                cells.append(f"{r['warm_s'][0]:.1f}–{r['warm_s'][1]:.1f} s")
        out.append(cells)
    header = ["workers", runs[0]["label"], "warm-up (caches fill)", *(run["label"] for run in runs[1:])]
    return _table(header, ["---:"] * len(header), out)


LOADER_STEPS = {
    "student step (KitSRModel), measured": "student step (`KitSRModel`)",
    "distillation step (DistillModel), measured": "distillation step (`DistillModel`)",
    "given step rate 1,100 samples/s": "`--step-rate 1100` (EDSR-64×16, batch 16, on an H200: the issue's number)",
}


def loader_steps(page: Path) -> str:
    """The step rates of the same runs and the workers each needs."""
    runs = read_result("loader_cpu")["runs"]
    out = []
    for i, step in enumerate(runs[0]["steps"]):
        cells = [LOADER_STEPS.get(step["step"], step["step"])]
        for run in runs:
            r = run["steps"][i]
            rate = r["samples_s"]
            cells += [f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}", r["workers_needed"]]
        out.append(cells)
    header = ["step, same run"]
    for k in range(len(runs)):
        header += [f"run {k + 1} samples/s", "workers needed"]
    return _table(header, ["---"] + ["---:"] * (len(header) - 1), out)


def prune(result: str) -> Callable[[Path], str]:
    """Issue #24's controls, one ``bench prune --result NAME`` record (the pruned start vs scratch, +- teacher)."""

    def render(page: Path) -> str:
        from bench import prune as bench_prune  # its top level imports only bench.harness

        return bench_prune.markdown(read_result(result), page)

    return render


def int8(page: Path) -> str:
    """Issue #27: fp32 / post-training INT8 / quantisation-aware fine-tuned INT8 (``bench int8``)."""
    from bench import int8 as bench_int8  # its top level imports only bench.harness

    return bench_int8.markdown(read_result("int8"), page)


def qat_tries(page: Path) -> str:
    """Issue #27: every INT8 try on the official SPAN, simulated (``bench qat_tries``)."""
    from bench import qat_tries as bench_qat_tries

    return bench_qat_tries.markdown(read_result("qat_tries"))


def qat_libs(page: Path) -> str:
    """Issue #27: torch.ao beside brevitas, each QDQ file in onnxruntime vs its simulation (``bench qat_libs``)."""
    from bench import qat_libs as bench_qat_libs  # its top level imports only bench.harness

    return bench_qat_libs.markdown(read_result("qat_libs"))


BLOCKS: dict[str, Callable[[Path], str]] = {
    "shipped": shipped,
    **{
        name: prune(name)
        for name in (
            "prune",
            "prune_long",
            "prune_long_lq48",
            "prune_tries",
            "prune_long_trainable",
            "prune_start_tries",
            "prune_15k",
            "prune_fade",
            "prune_taylor",
            "prune_photos40",
            "prune_lr",
        )
    },
    "recipes-cpu": recipes_cpu,
    **{
        f"recipes-real-{s}-{n}": recipes_real(s, n)
        for s, n in (("rlfn32x4", 600), ("rlfn32x4", 3000), ("rlfn32x4", 10000), ("rlfn52x6", 600), ("rlfn52x6", 3000))
    },
    "teacher-cache": teacher_cache,
    "gtfree-realesrgan": gtfree,
    "formats": formats,
    "formats-sweep": formats_sweep,
    "int8": int8,
    "qat-tries": qat_tries,
    "qat-libs": qat_libs,
    "students": students,
    "span-set5": span_set5,
    "performance": performance,
    "compile": compile_block,
    "loader": loader,
    "loader-step-rates": loader_steps,
}


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render_page(page: Path, problems: list[str]) -> str:
    """The page with every block rendered; what could not be rendered is appended to ``problems``."""
    text = page.read_text()

    def replace(match: re.Match) -> str:
        block_id, old = match.group(1), match.group(2)
        where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}: block '{block_id}'"
        if block_id not in BLOCKS:
            problems.append(f"{where}: unknown (known: {', '.join(BLOCKS)})")
            return match.group(0)
        try:
            new = BLOCKS[block_id](page).rstrip("\n") + "\n"
        except (FileNotFoundError, KeyError) as err:
            problems.append(f"{where}: missing JSON or key ({err})")
            return match.group(0)
        if new != old:
            problems.append(f"{where}: out of date")
        return f"<!-- results:{block_id} -->\n{new}<!-- /results:{block_id} -->"

    return BLOCK.sub(replace, text)


def plots(check: bool) -> list[str]:
    """The curve plots of the real setting, from the runs in its JSON; with ``check``, only that they exist."""
    data = read_result("recipes_real")
    missing = []
    for key in data["tables"]:
        student, steps = key.rsplit("_", 1)
        path = RESULTS / f"recipes_real_{student}_{steps}.png"
        if check:
            missing += [] if path.is_file() else [f"{path.relative_to(ROOT)}: plot missing"]
            continue
        from bench import recipes_real

        recipes_real.plot(data["runs"], student, int(steps), path, data["references"])
    return missing


def main(argv: list[str] | None = None) -> int:
    """Render (or check) every block of every page; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench render", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is not up to date")
    parser.add_argument("--plots", action="store_true", help="also redraw the plots (matplotlib; imports the kit)")
    args = parser.parse_args(argv)
    problems: list[str] = []
    for page in pages():
        before = len(problems)
        text = render_page(page, problems)
        if not args.check and len(problems) > before:
            page.write_text(text)
    problems += plots(check=True) if args.check or not args.plots else plots(check=False)
    for line in problems:
        print(line)
    if args.check:
        return 1 if problems else 0
    stale = [p for p in problems if not p.endswith("out of date")]
    print(
        f"rendered {len(BLOCKS)} block kinds into {len(pages())} pages" + (f"; {len(stale)} problems" if stale else "")
    )
    return 1 if stale else 0

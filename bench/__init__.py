"""The kit's benchmarks, one harness: ``python -m bench <name> [flags]``; ``python -m bench --list``.

Each benchmark is a module of this package with ``main(argv)``; its numbers go to ``bench/results/*.json``
(:mod:`bench.harness`), and ``python -m bench render`` writes the tables and plots of README.md and docs/
from those files only (:mod:`bench.render`). Benchmarks print ratios measured side by side in one run; none is
a test.
"""

from __future__ import annotations

# name -> (module under bench/, one line). ``recipes_real`` is ``recipes --setting real``, not a command.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "recipes": ("recipes", "scratch vs every distillation recipe, same student, data, steps and seeds"),
    "gtfree": ("gtfree", "distillation without ground truth: Real-ESRGAN x4plus into a 0.8M student"),
    "teacher_cache": ("teacher_cache", "output-KD steps with the live teacher vs cached teacher images"),
    "distill_step": ("distill_step", "one distillation step vs one student step + one teacher inference"),
    "compile": ("compile", "train.compile: compile time and step time compiled vs eager"),
    "loader": ("loader", "the train loader's samples/s by workers beside the step rates"),
    "metrics": ("metrics", "kit's torch PSNR/SSIM vs BasicSR's numpy reference on real photos"),
    "onnx": ("onnx_latency", "onnxruntime vs PyTorch eager CPU latency of the shipped student"),
    "students": ("students", "size, MACs and CPU latency of every student family, default and max"),
    "formats": ("formats", "each shipped student exported with INT8: sizes, PSNR, onnxruntime latency"),
    "int8": ("int8", "fp32 vs post-training INT8 vs quantisation-aware fine-tuned INT8: PSNR, drop, speed"),
    "qat_tries": ("qat_tries", "what was tried for INT8 of the official SPAN: calibrated only and fine-tuned runs"),
    "qat_libs": ("qat_libs", "torch.ao vs brevitas: does each one's QDQ ONNX run in onnxruntime as simulated"),
    "runtime": ("runtime", "NTIRE-style whole-image runtime of each shipped student (CUDA events)"),
    "ntire_package": ("ntire_package", "PSNR/SSIM of an exported NTIRE package's model file on a folder pair"),
    "prune": ("prune", "SPAN ch48 pruned to the NTIRE baseline's size vs scratch, with and without the teacher"),
}

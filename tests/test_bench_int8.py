"""bench int8's table: one latency line per onnxruntime thread count, on the network's first rows."""

from __future__ import annotations

from bench.int8 import markdown


def _row(latency: list[dict]) -> dict:
    psnr = {s: {"fp32": 30.0, "ptq": 29.5, "qat": 29.9} for s in ("bundled", "Set5", "Set14")}
    drop = {s: {"ptq": 0.5, "qat": 0.1} for s in psnr}
    return {"name": "n", "psnr": psnr, "drop": drop, "latency": latency, "fine_tuning": {"steps": 20, "time": "3 s"}}


def test_each_thread_count_has_its_own_line() -> None:
    latency = [
        {"threads": t, "ms": {"fp32": 100.0 / t, "ptq": 40.0 / t, "qat": 50.0 / t}, "speedup": {"ptq": 2.5, "qat": 2.0}}
        for t in (1, 2)
    ]
    lines = markdown({"rows": [_row(latency)]}).splitlines()[2:]
    assert len(lines) == 3
    assert "100 ms, 1 thread |" in lines[0] and "50 ms (2.00×)" in lines[0] and "20 steps, 3 s" in lines[0]
    assert "50 ms, 2 threads |" in lines[1] and "25 ms (2.00×)" in lines[1] and "steps" not in lines[1]
    assert "ms" not in lines[2]


def test_the_default_thread_count_is_not_named() -> None:
    latency = [{"threads": None, "ms": {"fp32": 10.0, "ptq": 5.0}, "speedup": {"ptq": 2.0}}]
    first = markdown({"rows": [_row(latency)]}).splitlines()[2]
    assert "| 10 ms | 5 ms (2.00×) | — |" in first

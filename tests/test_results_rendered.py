"""The result tables of README.md and docs/ are what ``python -m bench render`` makes of bench/results/*.json."""

from __future__ import annotations

import json

import pytest

from bench import BENCHMARKS, harness, render
from bench.__main__ import main as bench_main


def test_rendered_pages_equal_the_json(capsys) -> None:
    assert render.main(["--check"]) == 0, capsys.readouterr().out


def test_check_names_stale_unknown_and_missing_blocks(tmp_path, monkeypatch) -> None:
    page = tmp_path / "page.md"
    fresh = render.BLOCKS["shipped"](page)
    stale = fresh.replace("+0.201", "+0.999")
    page.write_text(
        f"# t\n<!-- results:shipped -->\n{fresh}\n<!-- /results:shipped -->\n"
        f"<!-- results:shipped -->\n{stale}\n<!-- /results:shipped -->\n"
        "<!-- results:no-such-table -->\nx\n<!-- /results:no-such-table -->\n"
    )
    problems: list[str] = []
    text = render.render_page(page, problems)
    assert problems == [
        f"{page}: block 'shipped': out of date",
        f"{page}: block 'no-such-table': unknown (known: {', '.join(render.BLOCKS)})",
    ]
    assert text.count(fresh) == 2 and "+0.999" not in text  # the stale block is rendered anew, the unknown kept
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "empty")
    problems = []
    render.render_page(page, problems)
    assert all("missing JSON" in p for p in problems[:2]) and len(problems) == 3


def test_every_result_says_what_produced_it() -> None:
    for path in sorted(harness.RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        assert "command" in record, path.name
        if record.get("source"):  # transcribed from a published table: says so and how to regenerate it
            assert "transcribed" in record["source"], path.name


def test_harness_lists_every_benchmark_and_refuses_unknown_names(capsys) -> None:
    assert bench_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "recipes " in out and "render " in out and len(out.splitlines()) == len(BENCHMARKS) + 1
    assert bench_main(["no_such_bench"]) == 2
    assert "choose from: recipes" in capsys.readouterr().err


def test_write_result_records_the_command_and_flags(tmp_path) -> None:
    path = harness.write_result(
        str(tmp_path / "x.json"), {"rows": [1]}, name="demo", argv=["--n", "a b"], flags={"n": 1}
    )
    record = json.loads(path.read_text())
    assert record == {"benchmark": "demo", "command": "python -m bench demo --n 'a b'", "flags": {"n": 1}, "rows": [1]}
    with pytest.raises(ValueError, match="reserved keys"):
        harness.write_result(str(tmp_path / "y.json"), {"command": 1}, name="demo", argv=[])

"""kit.files.staged_folder: the one write-then-rename helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.files import staged_folder


def test_renamed_into_place_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "out"
    with staged_folder(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".out.partial-")
        (tmp / "a.txt").write_text("x")
        assert not dest.exists()  # nothing under the final name until the end
    assert (dest / "a.txt").read_text() == "x"
    assert [p.name for p in dest.parent.iterdir()] == ["out"]


def test_error_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_folder(dest) as tmp:
        (tmp / "a.txt").write_text("x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("if_exists", "expected"), [("keep", "old"), ("replace", "new")])
def test_existing_kept_or_replaced(tmp_path: Path, if_exists: str, expected: str) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "f").write_text("old")
    with staged_folder(dest, if_exists=if_exists) as tmp:
        (tmp / "f").write_text("new")
    assert (dest / "f").read_text() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_refused_by_default(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "f").write_text("old")
    with pytest.raises(FileExistsError, match="not overwritten"), staged_folder(dest) as tmp:
        (tmp / "f").write_text("new")
    assert (dest / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

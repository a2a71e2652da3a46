"""detectops.fsutil: writes land whole or not at all, and never leave temporaries behind."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from detectops import fsutil
from detectops.fsutil import atomic_write_bytes, atomic_write_text, publish, scratch_dir, staged_dir


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _usual_mode(base: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def test_atomic_write_creates_parents_and_gives_the_usual_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.json"
    assert atomic_write_text(path, "{}\n") == path
    assert path.read_text() == "{}\n"
    assert _mode(path) == _usual_mode(0o666)  # not mkstemp's private 0600: others may read results
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert _names(path.parent) == ["out.json"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fsutil.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["out.txt"]


def test_atomic_write_of_unencodable_text_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(tmp_path / "out.txt", "\udc80")  # a lone surrogate cannot be UTF-8
    assert _names(tmp_path) == []


def test_staged_dir_creates_final_with_the_usual_mode(tmp_path: Path) -> None:
    final = tmp_path / "report"
    with staged_dir(final, replace=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".report.tmp-")
        (tmp / "a.txt").write_text("a")
        assert not final.exists()  # nothing at the final path until the block is done
    assert _names(final) == ["a.txt"]
    assert _mode(final) == _usual_mode(0o777)  # not mkdtemp's 0700
    assert _names(tmp_path) == ["report"]


@pytest.mark.parametrize("replace", [True, False])
def test_failed_staged_dir_keeps_the_old_dir_and_no_temp(tmp_path: Path, replace: bool) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half-way"):
        with staged_dir(final, replace=replace) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash half-way")
    assert _names(final) == ["old.txt"]
    assert _names(tmp_path) == ["out"]


def test_staged_dir_replace_swaps_the_whole_dir(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staged_dir(final, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _names(final) == ["new.txt"]  # replaced, never merged
    assert _names(tmp_path) == ["out"]  # the old copy moved aside is gone too


def test_staged_dir_keep_existing_when_another_process_won(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with staged_dir(final, replace=False) as tmp:
        (tmp / "ours.txt").write_text("ours")
        final.mkdir()  # another process publishes its complete entry meanwhile
        (final / "theirs.txt").write_text("theirs")
    assert _names(final) == ["theirs.txt"]
    assert _names(tmp_path) == ["entry"]


def test_publish_from_scratch_dir_keeps_or_replaces(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with scratch_dir(cache / "model") as tmp:
        built = tmp / "extracted" / "model"
        built.mkdir(parents=True)
        (built / "v").write_text("1")
        assert publish(built, cache / "model-abc", replace=False) == cache / "model-abc"
    assert _names(cache) == ["model-abc"]  # the scratch dir and the rest of its content are gone

    with scratch_dir(cache / "model") as tmp:
        (tmp / "v").write_text("2")
        publish(tmp / "v", cache / "model-abc" / "v", replace=False)  # a file: kept, not overwritten
        (tmp / "d").mkdir()
        (tmp / "d" / "v").write_text("2")
        publish(tmp / "d", cache / "model-abc", replace=False)  # a dir: theirs kept
    assert (cache / "model-abc" / "v").read_text() == "1"

    with scratch_dir(cache / "model") as tmp:
        (tmp / "d").mkdir()
        (tmp / "d" / "w").write_text("2")
        publish(tmp / "d", cache / "model-abc", replace=True)
        (tmp / "f").write_text("3")
        publish(tmp / "f", cache / "file", replace=True)
        (tmp / "f").write_text("4")
        publish(tmp / "f", cache / "file", replace=True)  # a file replaces a file
    assert _names(cache / "model-abc") == ["w"]
    assert (cache / "file").read_text() == "4"
    assert _names(cache) == ["file", "model-abc"]


def test_failed_swap_puts_the_old_dir_back(tmp_path: Path, monkeypatch) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    real_rename = os.rename

    def rename(src, dst):
        if Path(dst) == final and Path(src).name.startswith(".out.tmp-"):
            raise OSError("simulated failure while swapping")
        return real_rename(src, dst)

    monkeypatch.setattr(fsutil.os, "rename", rename)
    with pytest.raises(OSError, match="swapping"):
        with staged_dir(final, replace=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert _names(final) == ["old.txt"]
    assert _names(tmp_path) == ["out"]


def test_temp_patterns_match_the_temporaries(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns(*fsutil.TEMP_PATTERNS)
    names = [fsutil._sibling(tmp_path / "x.json", "tmp").name, fsutil._sibling(tmp_path / "d", "old").name, "x.json"]
    assert ignore(str(tmp_path), names) == set(names[:2])

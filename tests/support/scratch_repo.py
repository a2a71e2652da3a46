"""A bare clone of this repository to release commits from (level 2's e2e test and benchmark).

    repo = ScratchRepo(tmp_dir)                       # bare clone of HEAD + a working clone
    sha = repo.commit("bad-latency", "Slow", {"include/x.py": ("old", "new")})   # pushed to the bare clone
    # level 2 fetches `sha` from `repo.bare`

Commits start from this checkout's HEAD, so they hold its committed code plus the edit (a
checkout without .git, an exported tree, becomes a one-commit repository first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_IDENTITY = {"GIT_AUTHOR_NAME": "detectops-bot", "GIT_AUTHOR_EMAIL": "bot@detectops.invalid",
             "GIT_COMMITTER_NAME": "detectops-bot", "GIT_COMMITTER_EMAIL": "bot@detectops.invalid"}
#: The bad commit of level 2's scenarios: every model request waits 0.4 s before inference.
SLOW_ANCHOR = "        engine = svc.require_engine()\n        futures ="
SLOW_EDIT = {"include/detectops/serve/app.py":
             (SLOW_ANCHOR, "        await asyncio.sleep(0.4)  # the regression\n" + SLOW_ANCHOR)}
#: A harmless change (a docstring line), so the commit builds new images.
GOOD_EDIT = {"include/detectops/serve/__init__.py": ('"""', '"""Released by level 2.\n\n')}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_IDENTITY}, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


#: What a checkout without its .git holds that is not the project's (local state, environments).
_NOT_SOURCE = shutil.ignore_patterns(".state", ".venv", "node_modules", "__pycache__", "*.pyc", ".pytest_cache",
                                     "*.egg-info")


def _as_git_repo(source: Path, tmp: Path) -> Path:
    """``source`` if it is a git checkout; else a one-commit repository of its files (an exported tree)."""
    if (source / ".git").exists():
        return source
    tree = tmp / "source"
    shutil.copytree(source, tree, ignore=_NOT_SOURCE, symlinks=True)
    git("init", "--quiet", cwd=tree)
    git("add", "-A", cwd=tree)
    git("commit", "--quiet", "-m", "the checkout under test", cwd=tree)
    return tree


class ScratchRepo:
    def __init__(self, tmp: Path, source: Path = REPO) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        source = _as_git_repo(source, tmp)
        self.bare, self.work = tmp / "detectops.git", tmp / "work"
        self.base = git("rev-parse", "HEAD", cwd=source)
        git("clone", "--quiet", "--bare", "--no-hardlinks", str(source), str(self.bare), cwd=tmp)
        git("clone", "--quiet", str(self.bare), str(self.work), cwd=tmp)

    def commit(self, branch: str, message: str, edits: dict[str, tuple[str, str]]) -> str:
        """A commit on ``branch`` (from the base commit) replacing ``old`` by ``new`` once in each file; pushed."""
        git("checkout", "--quiet", "-B", branch, self.base, cwd=self.work)
        for rel, (old, new) in edits.items():
            path = self.work / rel
            text = path.read_text()
            if old not in text:
                raise AssertionError(f"{rel} no longer contains {old!r}: update the edit")
            path.write_text(text.replace(old, new, 1))
            git("add", rel, cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", "--force", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

"""Every Python block of the README and of the documentation site runs as written.

Blocks are the fenced ```` ```python ```` blocks of ``README.md`` and ``docs/*.md``.
Each runs on its own, in a fresh namespace, except that an HTML comment (invisible once
rendered) on the line before a fence changes that:

* ``<!-- docs-test: continue -->``: run in the namespace the previous block of the same
  file left, as a reader who ran that one first would;
* ``<!-- docs-test: output -->`` before a ```` ```text ```` block: that block is what the
  Python blocks just before it print, compared exactly (trailing spaces aside);
* ``<!-- docs-test: skip REASON -->``: not run (``REASON`` is required and reported).

Blocks run with JAX's defaults (float32: the test suite's float64 switch is turned off
around them), so the numbers they print are a reader's.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import re
from dataclasses import dataclass, field
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>continue|output|skip)\s*(?P<why>.*?)\s*-->")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str = ""
    reason: str = ""


@dataclass
class Session:
    """Blocks that share one namespace: a first block and those that continue it."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        first = self.blocks[0]
        return f"{first.path.relative_to(ROOT)}:{first.line}"


def extract(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the marker on the line before."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening or not opening["info"].strip():
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][indent:])
            j += 1
        previous = lines[i - 1] if i > 0 else ""
        marker = _MARKER.match(previous)
        blocks.append(
            Block(
                path=path,
                line=i + 1,
                language=opening["info"].strip().split()[0],
                code="\n".join(body) + "\n",
                marker=marker["what"] if marker else "",
                reason=marker["why"] if marker else "",
            )
        )
        i = j + 1
    return blocks


def sessions(path: Path) -> list[Session]:
    found: list[Session] = []
    for block in extract(path):
        if block.marker == "output":
            if block.language != "text" or not found:
                raise ValueError(f"{path}:{block.line}: an output marker needs a text block")
            found[-1].blocks.append(block)
        elif block.language != "python":
            continue
        elif block.marker == "continue":
            if not found:
                raise ValueError(f"{path}:{block.line}: nothing to continue")
            found[-1].blocks.append(block)
        else:
            found.append(Session([block]))
    return found


ALL = [session for path in SOURCES for session in sessions(path)]


def run(session: Session) -> None:
    namespace: dict = {"__name__": "__docs__"}
    printed = io.StringIO()
    with jax.enable_x64(False):
        for block in session.blocks:
            where = f"{block.path.relative_to(ROOT)}:{block.line}"
            if block.marker == "skip":
                assert block.reason, f"{where}: a skipped block must say why"
                continue
            if block.language == "text":  # expected output of the blocks before it
                got = [line.rstrip() for line in printed.getvalue().strip().splitlines()]
                want = [line.rstrip() for line in block.code.strip().splitlines()]
                assert got == want, f"{where}: printed\n" + "\n".join(got)
                printed = io.StringIO()
                continue
            # so that a failing block's traceback shows its lines
            linecache.cache[where] = (len(block.code), None, block.code.splitlines(True), where)
            with contextlib.redirect_stdout(printed):
                exec(compile(block.code, where, "exec"), namespace)


@pytest.mark.parametrize("session", ALL, ids=[s.id for s in ALL])
def test_block_runs_as_written(session):
    run(session)


def test_blocks_are_found():
    """The extractor sees the README's blocks (guards against a silently empty run)."""
    readme = [b for b in extract(ROOT / "README.md") if b.language == "python"]
    assert readme, "no Python block found in README.md"
    assert all(s.blocks[0].marker != "continue" for s in ALL)

"""The README is a front door: short, the two commands, and a link to every topic file in docs/.

Every link in the README and in docs/*.md resolves, so a section moved or renamed leaves no dead link.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250
LINK = re.compile(r"\]\(([^)\s]+)\)")


def links(path: Path) -> list[str]:
    """Relative link targets of a Markdown file (web links and in-page anchors left out), anchors cut."""
    targets = (t.split("#", 1)[0] for t in LINK.findall(path.read_text()))
    return [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    quick = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make demo", "make test"]


def test_the_readme_links_every_topic_file_in_docs():
    linked = {(ROOT / t).resolve() for t in links(README)}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs/ files the README does not link: {missing}"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    for path in [README, ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]:
        dead = [t for t in links(path) if not (path.parent / t).exists()]
        assert not dead, f"{path.relative_to(ROOT)}: dead links {dead}"


def test_links_are_read_as_written(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("[a](docs/A.md#x) ![b](b.png) [c](https://x.org/y) [d](#here) [e](gone.md)")
    assert links(page) == ["docs/A.md", "b.png", "gone.md"]

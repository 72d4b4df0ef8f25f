"""The README stays a front page, and no link in it or in docs/ leads nowhere.

Why: the README grew to 1,179 lines and its opening paragraph went stale while the model changed
underneath it; a short front page that points to docs/ pages is one a reader finishes and a
maintainer keeps true. Links are checked because pages moved: a dead link is the usual leftover.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 400
#: [text](target) and ![alt](target); the target ends at whitespace or ')'
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(page: Path) -> list[str]:
    """Targets of the page's Markdown links that are files of this repository (no URLs, no mail)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_relative_link_points_to_a_file():
    dead = []
    for page in pages():
        for target in relative_links(page):
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target}")
    assert not dead, "links to nothing:\n" + "\n".join(dead)


def test_docs_pages_are_linked_from_the_readme():
    """Every page in docs/ is reachable from the front page (an unlinked page is never read)."""
    linked = {(ROOT / t.split("#")[0]).resolve() for t in relative_links(ROOT / "README.md")}
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_link_scanner_finds_images_and_skips_urls(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("![a](img/x.png) [b](docs/y.md#z) [c](https://e.org) [d](#top)\n```\n[e](nope.md)\n```\n")
    assert relative_links(page) == ["img/x.png", "docs/y.md#z"]

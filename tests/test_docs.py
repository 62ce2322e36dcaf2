"""The README stays short, and every relative link in it and in docs/ reaches a file (and heading) that exists."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercased, punctuation dropped, spaces to hyphens."""
    heads = [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_links_resolve():
    broken = []
    for page in PAGES:
        in_code = False
        for n, line in enumerate(page.read_text().splitlines(), 1):
            in_code ^= line.startswith("```")
            for target in ([] if in_code else LINK.findall(line)):
                if re.match(r"[a-z]+://|mailto:", target):
                    continue
                path, _, anchor = target.partition("#")
                dest = (page.parent / path).resolve() if path else page
                if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
                    broken.append(f"{page.relative_to(ROOT)}:{n}: {target}")
    assert not broken, broken


def test_every_doc_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in readme] == []

"""The documentation holds together: a short README, links that resolve inside the repository, no page
under ``docs/`` that a reader of the README cannot reach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

README_MAX_LINES = 250
# inline links and images, [text](target) or ![alt](target "title"); code spans are removed first
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def checked_pages(root: Path) -> list[Path]:
    """The pages whose links must hold: the README, every page under docs/, the bench README and the
    contributor files."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "bench" / "README.md"]
    pages += [root / name for name in ("CONTRIBUTING.md", "CHANGELOG.md")]
    return [p for p in pages if p.exists()]


def links(page: Path) -> list[str]:
    return LINK.findall(CODE.sub("", page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{2,}|[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}


def link_problems(page: Path, root: Path) -> list[str]:
    """Every link of ``page`` that leaves the repository, points at a missing file or a missing heading."""
    problems = []
    for target in links(page):
        where = f"{page.relative_to(root)}: {target}"
        if SCHEME.match(target):
            if not target.startswith(("http://", "https://")):
                problems.append(f"{where} (not a web link)")
            elif page.name == "README.md" and page.parent == root:
                problems.append(f"{where} (the README links only inside the repository)")
            continue
        if "/work/" in target or target.startswith("/"):
            problems.append(f"{where} (an absolute path)")
            continue
        path_part, _, anchor = target.partition("#")
        file = (page.parent / path_part).resolve() if path_part else page.resolve()
        if not file.is_relative_to(root.resolve()):
            problems.append(f"{where} (outside the repository)")
        elif not file.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            problems.append(f"{where} (no such heading)")
    return problems


def reachable_pages(root: Path) -> set[Path]:
    """Markdown pages reachable from the README by following relative links."""
    seen: set[Path] = set()
    todo = [(root / "README.md").resolve()]
    while todo:
        page = todo.pop()
        if page in seen or not page.exists():
            continue
        seen.add(page)
        for target in links(page):
            path_part = target.partition("#")[0]
            if path_part.endswith(".md") and not SCHEME.match(target):
                todo.append((page.parent / path_part).resolve())
    return seen


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize("page", checked_pages(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(page):
    assert not link_problems(page, ROOT)


def test_no_page_names_a_path_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in checked_pages(ROOT) if "/work/" in p.read_text()]
    assert not offenders


def test_every_docs_page_is_reachable_from_the_readme():
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ holds the documentation by topic"
    assert not sorted(str(p.relative_to(ROOT)) for p in pages - reachable_pages(ROOT))


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The scan itself: a broken link, a link out of the repository, a missing heading, a README link to
    the web and an unreachable page are each reported; a good link and its heading are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.md").write_text("# Good page\n\n## The `warning_list` table\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Nobody links here\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/good.md#the-warning_list-table) [gone](docs/missing.md) [out](../elsewhere.md)\n"
        "[anchor](docs/good.md#nothing) [web](https://example.org) `[code](ignored.md)`\n"
    )
    problems = link_problems(tmp_path / "README.md", tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/missing.md (no such file)",
        "../elsewhere.md (outside the repository)",
        "docs/good.md#nothing (no such heading)",
        "https://example.org (the README links only inside the repository)",
    ]
    reached = {p.name for p in reachable_pages(tmp_path)}
    assert reached == {"README.md", "good.md"}

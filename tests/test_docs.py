"""The user's pages hold together: every relative link in README.md and docs/ points to a file that exists (and to a
heading that exists, for a link with #anchor), every `make` target they name is in the Makefile, and the results they
quote are the kept reports' numbers (benchmarks/headline.py reads them), so a number cannot drift from its source."""

from __future__ import annotations

import importlib.util
import re

import pytest
from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "docs" / "log" / "index.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def headline_module():
    spec = importlib.util.spec_from_file_location("headline", REPO / "benchmarks" / "headline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_slug_follows_githubs_rule():
    assert slug("Serving (`culturemanager serve`, 2026-12-01)") == "serving-culturemanager-serve-2026-12-01"
    assert slug("Do the synthetic labels mean what they say?") == "do-the-synthetic-labels-mean-what-they-say"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    links = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if not re.match(r"[a-z]+:", t)]
    assert links, f"{page} links nowhere: a user page should link its neighbours"
    for target in links:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} -> {file} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: {target}: no heading #{anchor} in {file.name}"


def test_every_make_target_named_exists():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w./-]+):", makefile, re.M))
    named = {t for page in PAGES for t in re.findall(r"`make ([\w./-]+)", page.read_text(encoding="utf-8"))}
    assert {"demo", "test", "bench"} <= named
    assert named <= targets, f"named in the docs but not in the Makefile: {sorted(named - targets)}"


def test_the_readmes_first_screen_holds_the_headline_from_the_kept_reports():
    headline = headline_module()
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_screen = text[:text.index("\n## ")]
    assert headline.headline() in first_screen
    assert "make demo" in first_screen and "make test" in first_screen and "──►" in first_screen
    # the untrained model's AUC, which the one sentence under the table compares with
    assert headline.avg_cell(headline.FULL, headline.AUC[0], "Original") in first_screen
    assert len(text.splitlines()) <= 300


def test_the_results_page_shows_the_kept_reports_tables():
    headline = headline_module()
    page = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert headline.report_table(headline.FULL) in page
    assert headline.report_table(headline.SHARE) in page
    quick = ["Original", "TaskSFT", "CultureManager", "CultureManager (prompt router)", "CultureManager (top-2 mix)",
             "Probe (linear)"]
    assert headline.report_table(headline.RESULTS / "bench_quick_2026-12-08_report.md", quick) in page


def test_avg_cell_names_a_missing_row():
    headline = headline_module()
    with pytest.raises(ValueError, match="no row 'Nobody'"):
        headline.avg_cell(headline.FULL, headline.RAW[0], "Nobody")

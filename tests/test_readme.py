"""README.md (the front door) and the manual under docs/ (an mkdocs-material site)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# Markdown links and images: [text](target) / ![alt](target); the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# Development history does not belong in user docs.
HISTORY = re.compile(r"\bissue\s*#?\d+|\bbranch(?:es)?\b|\bmerged?\b|not part of this build|during development",
                     re.IGNORECASE)


def user_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    cmds = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert cmds[0] == "pip install -e . && exposure demo"
    assert cmds[1] == "pip install -e '.[test]' && python -m pytest"
    assert cmds[1] in (ROOT / ".ci/run").read_text(encoding="utf-8")


def test_readme_is_a_front_door_not_a_manual():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; the limit is {README_MAX_LINES}: move detail to docs/"


@pytest.mark.parametrize("page", user_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_images_resolve_from_the_page(page):
    # Relative to the page itself, so they work on the repository page and on the site alike.
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page (mkdocs --strict checks anchors)
        path = target.split("#", 1)[0]
        if path.startswith("/") or not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: links that do not resolve: {missing}"


@pytest.mark.parametrize("page", user_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_history_in_user_docs(page):
    found = [m.group(0) for m in HISTORY.finditer(page.read_text(encoding="utf-8"))]
    assert not found, f"{page.relative_to(ROOT)}: development history in user docs: {found}"


def test_tests_page_installs_every_debian_package_ci_installs():
    ci = (ROOT / ".ci/run").read_text(encoding="utf-8")
    ci_pkgs = {w for m in re.finditer(r"^apt_pkgs\+?=\(([^)]*)\)", ci, re.MULTILINE) for w in m.group(1).split()}
    lines = [ln for ln in (ROOT / "docs/tests.md").read_text(encoding="utf-8").splitlines()
             if "apt-get install" in ln]
    assert len(lines) == 1, "docs/tests.md should give exactly one apt-get install line"
    words = lines[0].split("apt-get install", 1)[1].split()
    doc_pkgs = {w for w in words if not w.startswith("-")}
    assert doc_pkgs == ci_pkgs, (f"docs/tests.md lacks {sorted(ci_pkgs - doc_pkgs)}, "
                                 f"has extra {sorted(doc_pkgs - ci_pkgs)}")


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, re.MULTILINE))
    assert pages == listed, f"not in the nav: {sorted(pages - listed)}; in the nav, no page: {sorted(listed - pages)}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs-material not installed: pip install -e '.[docs]' (CI builds the site)")
def test_site_builds_in_strict_mode(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "site/results/index.html").exists()
    assert (tmp_path / "site/images/console.png").exists()

"""Assemble README.md from the fragments in docs/readme/ (in file-name order).

Each room documents itself in its own fragment; edit the fragment, then run
``python scripts/build_readme.py``. A test checks that README.md is up to date.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTE = "<!-- Generated from docs/readme/*.md by scripts/build_readme.py: edit the fragments. -->\n"


def build() -> str:
    parts = [p.read_text(encoding="utf-8").strip() + "\n" for p in sorted((ROOT / "docs/readme").glob("*.md"))]
    return NOTE + "\n".join(parts)


if __name__ == "__main__":
    text = build()
    if "--check" in sys.argv:
        if (ROOT / "README.md").read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of date: run python scripts/build_readme.py")
    else:
        (ROOT / "README.md").write_text(text, encoding="utf-8")

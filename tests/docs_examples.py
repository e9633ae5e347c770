"""Run the first ``python`` code block of a section of a docs page, as the docs tests do."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def run_docs_example(page: str, heading: str) -> str:
    """Execute the first ```python block under the ``## heading`` (a prefix of it) of ``docs/page``;
    return the section's text (for the numbers it quotes)."""
    text = (DOCS / page).read_text()
    section = text[text.index(f"## {heading}"):]
    section = section.split("\n## ")[0]
    code = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
    exec(compile(code, f"docs/{page}", "exec"), {"__name__": "docs_example"})  # noqa: S102 - our docs
    return section

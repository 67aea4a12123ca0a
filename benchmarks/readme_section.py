"""Replace one marked section of benchmarks/README.md (or append it under a heading)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(name: str, heading: str, lines: list[str]) -> None:
    """Put lines between <!-- NAME:START --> and <!-- NAME:END -->, in place when the markers exist."""
    start, end = f"<!-- {name}:START -->", f"<!-- {name}:END -->"
    section = "\n".join([start, "", *lines, "", end])
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text += f"\n## {heading}\n\n{section}\n"
    README.write_text(text)

"""Checks every relative link in README.md and docs/*.md: the file exists,
and a #fragment names a heading in it (by GitHub's anchor rules).

Run by `make test`: ``python tests/docs_links.py``."""

import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def slug(heading: str) -> str:
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = "".join(
        c for c in text if c.isalnum() or c in "-_ " or unicodedata.category(c).startswith("L")
    )
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        heading = not in_code and re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            s = slug(heading.group(2))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def broken(files: list[Path]) -> list[str]:
    problems = []
    for f in files:
        text = re.sub(r"```.*?```", "", f.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://|^mailto:", target):
                continue
            path, _, fragment = target.partition("#")
            dest = (f.parent / path).resolve() if path else f
            where = f.relative_to(ROOT)
            if not dest.exists():
                problems.append(f"{where}: {target}: no such file")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                problems.append(f"{where}: {target}: no such heading")
    return problems


if __name__ == "__main__":
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = broken(files)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} broken link(s) in {len(files)} files")
    sys.exit(1 if problems else 0)

"""Every link in the README, the docs and the notebooks' text resolves to a file of the repository."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\s[^>]*(?:src|href)\s*=\s*["']([^"']+)["']""")
EXTERNAL = ("http://", "https://", "mailto:")


SCRATCH = ("runs", "build")


def documents() -> list[Path]:
    """README.md, every .md below the project's folders (not hidden or scratch ones: .venv,
    runs), and the notebooks."""
    folders = [d for d in sorted(ROOT.iterdir()) if d.is_dir() and not d.name.startswith(".")
               and d.name not in SCRATCH and not d.name.endswith(".egg-info")]
    return [ROOT / "README.md", *(p for d in folders for p in sorted(d.rglob("*.md"))),
            *sorted((ROOT / "notebooks").glob("*.ipynb"))]


def text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    return path.read_text()


def links(markdown: str) -> list[str]:
    found = LINK.findall(markdown) + HTML_SRC.findall(markdown)
    return [t for t in found if not t.startswith(EXTERNAL) and not t.startswith("#")]


def test_link_pattern() -> None:
    md = 'See [a](docs/a.md#x), ![fig](<docs/f.png> "t"), [web](https://x.org), [top](#y), <img src="n/b.png">'
    assert links(md) == ["docs/a.md#x", "docs/f.png", "n/b.png"]


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(path: Path) -> None:
    broken = []
    for target in links(text(path)):
        file = (path.parent / target.split("#", 1)[0]).resolve()
        if not file.exists() or ROOT not in (file, *file.parents):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"


def test_readme_shows_a_committed_figure() -> None:
    images = [t for t in LINK.findall((ROOT / "README.md").read_text()) if t.endswith(".png")]
    assert images and all((ROOT / t).is_file() for t in images)

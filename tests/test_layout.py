"""Guards for the platform/ source root (docs/architecture.md, "Layout": it is not a package)."""

import re
import subprocess
import sys
from pathlib import Path

PLATFORM = Path(__file__).resolve().parent.parent / "platform"


def test_platform_is_not_a_package() -> None:
    assert not (PLATFORM / "__init__.py").exists(), (
        "platform/__init__.py shadows the stdlib 'platform' module; remove it"
    )


def test_no_platform_module_shadows_stdlib() -> None:
    names = {p.name.removesuffix(".py") for p in PLATFORM.iterdir() if p.is_dir() or p.suffix == ".py"}
    clashes = sorted(names & set(sys.stdlib_module_names))
    assert not clashes, f"modules under platform/ named after stdlib modules: {clashes}"


REPO = PLATFORM.parent
#: A relative path in any text: ../something (a link, a backticked path, a string).
_PARENT_PATH = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-][\w./-]*)")
_TEXT_SUFFIXES = {
    ".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".ini", ".sh", ".txt", ".html", ".js", ".css"
}


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    return [
        REPO / name
        for name in listed
        if name and (Path(name).suffix in _TEXT_SUFFIXES or Path(name).name in ("Dockerfile", "run", "test"))
    ]


def test_readme_links_the_architecture_map() -> None:
    readme = (REPO / "README.md").read_text()
    assert "](docs/architecture.md)" in readme
    assert (REPO / "docs" / "architecture.md").is_file()


def test_no_file_points_outside_the_repository() -> None:
    """Whoever clones Kastle has only the repository: no text may send them to ../elsewhere."""
    outside = []
    for path in _tracked_text_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for match in _PARENT_PATH.finditer(text):
            target = (path.parent / match.group(1)).resolve()
            if not target.is_relative_to(REPO):
                line = text.count("\n", 0, match.start()) + 1
                outside.append(f"{path.relative_to(REPO)}:{line}: {match.group(1)}")
    assert not outside, "paths outside the repository:\n" + "\n".join(outside)

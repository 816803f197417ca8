"""Guards for the platform/ source root (see DESIGN.md, "Why platform/ is not a package")."""

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

"""The layout rules a newcomer relies on, checked on the source tree (no imports are executed).

- ``models/`` never imports Qt (PySide6) or ``desktop``: it is the Qt-free half.
- The test tree mirrors the packages: every folder under ``tests/`` (but ``tests/support``)
  is a package folder of the source.
- A ``.py`` file over ``MAX_LINES`` lines says why in its module docstring, in a sentence with
  "long because" or "over N lines because".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("desktop", "models")
CHECKED_TREES = ("bench", "desktop", "models", "tests")
MAX_LINES = 400
QT_FREE = "models"
FORBIDDEN_IN_QT_FREE = ("PySide6", "shiboken6", "desktop")
TEST_HELPERS = Path("tests/support")
LONG_REASON = re.compile(r"\b(long|over \d+ lines)\b[^.]*\bbecause\b", re.IGNORECASE)

# Long files whose split is under way elsewhere; each loses its entry when the split lands.
BEING_SPLIT: set[str] = set()


def _python_files(*trees: str) -> list[Path]:
    return sorted(p for tree in trees for p in (ROOT / tree).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _top_level(module: str) -> str:
    return module.split(".", 1)[0]


def test_models_never_imports_qt_or_desktop():
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _python_files(QT_FREE)
        for module in _imported_modules(path)
        if _top_level(module) in FORBIDDEN_IN_QT_FREE
    ]
    assert offenders == []


def test_the_import_check_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from PySide6.QtCore import QObject\n    import desktop.cli\n")
    assert [_top_level(m) for m in _imported_modules(sample)] == ["PySide6", "desktop"]


def test_the_test_tree_mirrors_the_packages():
    tests = ROOT / "tests"
    folders = [
        p.relative_to(tests)
        for p in tests.rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts and not p.name.startswith(".")
    ]
    support = TEST_HELPERS.relative_to("tests")
    strays = [
        f"tests/{folder}"
        for folder in folders
        if folder != support
        and support not in folder.parents
        and not (folder.parts[0] in SOURCE_PACKAGES and (ROOT / folder / "__init__.py").is_file())
    ]
    assert strays == [], "test folders without a matching source package"
    assert folders, "no test folders found"


def _module_docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), str(path))) or ""


def test_long_files_say_why_in_their_docstring():
    unexplained = []
    for path in _python_files(*CHECKED_TREES):
        relative = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and relative not in BEING_SPLIT:
            if not LONG_REASON.search(" ".join(_module_docstring(path).split())):
                unexplained.append(f"{relative} ({lines} lines)")
    assert unexplained == []


def test_being_split_lists_only_files_that_exist_and_are_long():
    for relative in BEING_SPLIT:
        path = ROOT / relative
        if not path.exists():
            pytest.fail(f"{relative} is gone: remove it from BEING_SPLIT")
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines > MAX_LINES, f"{relative} is {lines} lines now: remove it from BEING_SPLIT"


@pytest.mark.parametrize(
    ("docstring", "explained"),
    [
        ("Downloads.\n\nLong because the Hub's protocol has many\ncases.", True),
        ("Over 400 lines because one class owns the schema.", True),
        ("A long story. Because reasons.", False),
        ("Downloads and listing.", False),
    ],
)
def test_the_reason_rule(docstring, explained):
    assert bool(LONG_REASON.search(" ".join(docstring.split()))) is explained

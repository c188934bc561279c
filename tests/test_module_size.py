"""No module of crm/, ml/ or web/ over 600 lines (tests and migrations aside): a longer module
holds more than one role, and a newcomer reads it as one."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
MODULES = sorted(path for package in ("crm", "ml", "web") for path in (ROOT / package).rglob("*.py")
                 if "migrations" not in path.parts and "tests" not in path.parts)


def test_module_size_walk_finds_the_packages():
    assert {"crm/models.py", "ml/models.py", "web/urls.py"} <= {str(p.relative_to(ROOT)) for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size_at_most_600_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_LINES})"

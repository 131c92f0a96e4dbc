"""``spark_jobs`` sits below everything: none of its modules imports ``dagster_project``.

Read from the source with ``ast`` (nothing is imported), so an import hidden inside a function, or behind
``TYPE_CHECKING``, is caught as well as one at the top of a module.
"""

import ast
from pathlib import Path

from dagster_project.settings import REPO_ROOT

SPARK_JOBS = REPO_ROOT / "spark_jobs"
FORBIDDEN = "dagster_project"


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every ``import x`` and ``from x import y`` in ``tree``, with its line number."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def upward_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {module}"
        for line, module in imported_modules(tree)
        if module == FORBIDDEN or module.startswith(f"{FORBIDDEN}.")
    ]


def test_the_check_sees_imports_anywhere_in_a_module(tmp_path: Path):
    module = tmp_path / "job.py"
    module.write_text("import os\n\ndef f():\n    from dagster_project.settings import get_settings\n")
    assert imported_modules(ast.parse(module.read_text())) == [(1, "os"), (4, "dagster_project.settings")]


def test_spark_jobs_import_nothing_from_dagster_project():
    modules = sorted(SPARK_JOBS.rglob("*.py"))
    assert len(modules) >= 5, f"expected the Spark jobs under {SPARK_JOBS}"
    offending = [line for path in modules for line in upward_imports(path)]
    assert not offending, "spark_jobs must not import dagster_project:\n" + "\n".join(offending)

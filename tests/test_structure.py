"""The structure a newcomer relies on: imports run only downstream, and importing a module reads no settings."""

import ast
import subprocess
import sys
from pathlib import Path

from dagster_project.defs import DOMAINS
from dagster_project.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "dagster_project"
ORDER = [domain.__name__.rsplit(".", 1)[-1] for domain in DOMAINS]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_the_domains_are_listed_in_data_flow_order() -> None:
    assert ORDER == ["ingestion", "features", "offline_store", "ml", "scoring", "serving", "monitoring", "automation"]


def test_each_domain_imports_only_the_domains_upstream_of_it() -> None:
    backwards = []
    for rank, domain in enumerate(ORDER):
        for path in sorted((PACKAGE / "defs" / domain).rglob("*.py")):
            for line, name in _imports(path):
                parts = name.split(".")
                if parts[:2] != ["dagster_project", "defs"] or len(parts) < 3 or parts[2] not in ORDER:
                    continue
                if ORDER.index(parts[2]) > rank:
                    backwards.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {name} (downstream of {domain})")
    assert not backwards, "imports that run against the data flow:\n" + "\n".join(backwards)


def test_spark_jobs_import_nothing_from_the_dagster_project() -> None:
    upward = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for path in sorted((REPO_ROOT / "spark_jobs").rglob("*.py"))
        for line, name in _imports(path)
        if name.split(".")[0] == "dagster_project"
    ]
    assert not upward, "spark_jobs sits below every domain:\n" + "\n".join(upward)


def test_importing_any_module_reads_no_settings() -> None:
    """Import every module of both packages in a fresh process whose settings cannot be read: none may try."""
    script = """
import importlib, pkgutil, sys
import dagster_project.settings as settings

def refuse(*args, **kwargs):
    raise RuntimeError("settings read at import")

settings.get_settings = refuse
settings.Settings.__init__ = refuse
failed = []
for package in ("dagster_project", "spark_jobs"):
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        try:
            importlib.import_module(module.name)
        except Exception as error:
            failed.append(f"{module.name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"modules that read settings (or failed) at import:\n{done.stdout}{done.stderr[-2000:]}"
    )


def _declared_names(example: Path) -> set[str]:
    """What a problem folder declares: its raw tables' columns, and its entity and label columns."""
    import yaml

    names: set[str] = set()
    for path in (example / "models").rglob("*.yml"):
        document = yaml.safe_load(path.read_text()) or {}
        for source in document.get("sources") or []:
            if source.get("name") == "raw":
                names |= {c["name"] for table in source.get("tables") or [] for c in table.get("columns") or []}
        for model in document.get("models") or []:
            meta = (model.get("config") or {}).get("meta") or {}
            if meta.get("role") in ("features", "labels"):
                entity = meta.get("entity")
                names |= set(entity if isinstance(entity, list) else [entity] if entity else [])
                names |= {meta["label"]} if meta.get("label") else set()
    return names


# Words the platform uses in its own sense that an example also happens to name a column by: the platform's
# `contract` (spark_jobs/contract.py, the declared problem) is not the subscription example's billing contract,
# nor an object store's AWS `region` (spark_jobs/object_store.py) its customers' region.
PLATFORM_WORDS = {"contract", "region"}


def _code_words(path: Path) -> set[tuple[int, str]]:
    """The identifiers and the words of the string literals of a module (comments and docstrings are prose)."""
    import io
    import re
    import tokenize

    found: set[tuple[int, str]] = set()
    previous = tokenize.INDENT
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if token.type == tokenize.NAME:
            found.add((token.start[0], token.string))
        elif token.type == tokenize.STRING and previous not in (tokenize.INDENT, tokenize.NEWLINE, tokenize.NL):
            found |= {(token.start[0], word) for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", token.string)}
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return found


def test_no_platform_module_names_a_column_of_an_example() -> None:
    """The platform takes every name from the problem's declaration: no module of dagster_project or spark_jobs
    spells a raw column, an entity or a label of any bundled example."""
    examples = sorted(p for p in (REPO_ROOT / "examples").iterdir() if (p / "models").is_dir())
    assert examples, "no example problem found under examples/"
    declared = set().union(*(_declared_names(e) for e in examples)) - PLATFORM_WORDS
    assert {"customer_id", "churned"} <= declared, "the subscription example's entity and label are declared"
    spelled = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {word}"
        for package in ("dagster_project", "spark_jobs")
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for line, word in sorted(_code_words(path))
        if word in declared
    ]
    assert not spelled, "platform modules that name an example's column:\n" + "\n".join(spelled)

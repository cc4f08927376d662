"""The layering of ARCHITECTURE.md, and one home for each shared fact, checked on the source itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facegan"
# What each folder may import from facegan, besides the low-level modules every layer may use.
LOW_LEVEL = {"settings", "runs", "checkpoint", "config", "files"}
ALLOWED = {
    "models": {"models"},
    "data": {"data"},
    "training": {"training", "models", "data"},
    "generate": {"generate", "models", "data"},
    "metrics": {"metrics", "models", "data"},
    "serve": {"serve", "api"},
}


def facegan_imports(path: Path) -> set[str]:
    """The top-level facegan modules or folders `path` imports ("data", "api", ...)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1]) + (node.module.split(".") if node.module else [])
            else:
                base = node.module.split(".")
            names = [base[1]] if len(base) > 1 else [alias.name for alias in node.names]
            if base[0] == "facegan":
                found.update(names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("facegan."))
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_folder_imports_only_the_layers_below_it(folder):
    for path in sorted((PACKAGE / folder).glob("*.py")):
        wrong = facegan_imports(path) - ALLOWED[folder] - LOW_LEVEL
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_cli_imports_only_the_api_and_the_api_no_serve_module():
    assert facegan_imports(PACKAGE / "cli.py") == {"api"}
    assert "serve" not in facegan_imports(PACKAGE / "api.py")


def test_the_import_check_sees_relative_and_absolute_imports():
    assert facegan_imports(PACKAGE / "serve" / "app.py") == {"api"}
    assert {"data", "models"} <= facegan_imports(PACKAGE / "training" / "loop.py")


@pytest.mark.parametrize("fact, home", [("(32, 64, 128)", "settings.py"), ('"FACEGAN_CACHE"', "settings.py"),
                                        ("sched_getaffinity", "settings.py"), ('"checkpoints"', "runs.py"),
                                        ("_is_mkldnn_bf16_supported", "models/precision.py"),
                                        ('"pretrained"', "settings.py"), ("SMALL_DATA = ", "training/ada.py")])
def test_each_shared_fact_is_defined_in_one_place(fact, home):
    holders = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py")) if fact in path.read_text()]
    assert holders == [home]

"""The README's test command, `.ci/run` and constraints.txt describe one and the same test environment."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"


def readme_test_command() -> str:
    commands = [line for line in (ROOT / "README.md").read_text().splitlines() if "python -m pytest" in line]
    assert len(commands) == 1, f"the README should give one test command, found {commands}"
    return commands[0].strip()


def constrained_packages() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_test_command() in ci_lines


def test_the_test_command_installs_with_the_constraints_file():
    assert "-c constraints.txt" in readme_test_command()
    assert CONSTRAINTS.is_file()


def test_every_test_dependency_is_pinned_in_the_constraints_file():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {canonical(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]) for requirement in wanted}
    missing = sorted(names - set(constrained_packages()))
    assert not missing, f"constraints.txt pins no version of {missing}"


def test_constraints_pin_torch_without_a_build_label():
    # A local label (+cpu, +cu124) would refuse the other builds of the same release.
    assert constrained_packages()["torch"] == "2.13.0"

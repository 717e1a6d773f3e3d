"""The project installs from a clean clone: every declared package is tracked by git."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _declared_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages: list[str] = config["tool"]["setuptools"]["packages"]
    return packages


def _tracked_files() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(listed.stdout.splitlines())


def test_the_architecture_packages_are_declared() -> None:
    declared = set(_declared_packages())
    assert {"archive", "dicomweb", "dimse", "fhir_bridge", "storage"} <= declared


@pytest.mark.parametrize("package", _declared_packages())
def test_each_declared_package_is_committed(package: str) -> None:
    # A folder that exists only in a working copy (empty folders are not
    # tracked) makes `pip install` of a fresh clone fail.
    assert f"{package}/__init__.py" in _tracked_files()


def test_the_migrations_are_committed() -> None:
    tracked = _tracked_files()
    on_disk = {
        f"migrations/{path.name}" for path in (ROOT / "migrations").glob("*.sql")
    }
    assert on_disk and on_disk <= tracked

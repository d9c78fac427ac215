"""The fingerprint of the code that computes a replay's results: a study key covers it, so that a study folder
filled by other code (a changed controller default, a fixed engine, another solver release) is run again rather
than reused."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable
from pathlib import Path

RESULT_PACKAGES = ("streams", "twin", "devices", "controllers", "phasetwin")
"""phasetwin's own packages: every Python source in them enters the fingerprint (a docstring too: cheaper to rerun
a study than to decide which edits cannot change a figure)."""
RESULT_LIBRARIES = ("numpy", "scipy", "pandas", "pandapower", "power-grid-model", "highspy", "ortools", "simpy")
"""The libraries whose release can change a number in a run folder: solvers, power flows, the event loop."""


def source_fingerprint(roots: Iterable[Path]) -> str:
    """SHA-256 over the relative path and content of every ``*.py`` under ``roots``, in a fixed order."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """The installed release of each of ``RESULT_LIBRARIES`` ("absent" when it is not installed)."""
    versions = {}
    for name in RESULT_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _package_root(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name}: not importable, so the code fingerprint cannot cover it")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def code_fingerprint() -> str:
    """phasetwin's sources and the result libraries' releases, as one SHA-256 (computed once per process)."""
    sources = source_fingerprint(_package_root(name) for name in RESULT_PACKAGES)
    libraries = ",".join(f"{name}={version}" for name, version in library_versions().items())
    return hashlib.sha256(f"{sources}\0{libraries}".encode()).hexdigest()

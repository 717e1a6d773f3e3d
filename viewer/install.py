"""Install OHIF from its npm package into a folder that dicomvault serves.

``npm pack`` fetches the published tarball (no Node.js build happens); the
tarball is checked against the integrity pinned here, its prebuilt ``dist``
is unpacked, moved to the served sub-path, given an app-config.js for this
archive, and swapped in for any earlier install in one rename.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from viewer.app_config import app_config_js
from viewer.errors import ViewerInstallError
from viewer.rebase import (
    rebase_bundle,
    rebase_index_html,
    rebase_manifest,
    rebase_stylesheet,
)

logger = logging.getLogger(__name__)

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
OHIF_INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxF"
    "fpq+jd5xXZB9E8EA=="
)
BASE_PATH = "/viewer/"
DICOMWEB_PATH = "/dicom-web"
MARKER = "dicomvault-viewer.json"
NPM_TIMEOUT_S = 900.0
_DIST = "package/dist/"


@dataclass(frozen=True)
class InstalledViewer:
    """What an install left in its folder."""

    folder: Path
    package: str
    version: str
    base_path: str


def read_marker(folder: Path) -> InstalledViewer | None:
    """The install recorded in ``folder``; None when it holds no dicomvault install."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        return InstalledViewer(
            folder, record["package"], record["version"], record["base_path"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Absent or unreadable alike: the folder is not a usable install.
        return None


def tarball_integrity(path: Path) -> str:
    """The Subresource Integrity string (sha512) that npm records for a tarball."""
    digest = hashlib.sha512()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def npm_pack(destination: Path, npm: str = "npm") -> Path:
    """Fetch the pinned OHIF tarball with ``npm pack`` into ``destination``."""
    spec = f"{OHIF_PACKAGE}@{OHIF_VERSION}"
    command = [npm, "pack", spec, "--json", "--pack-destination", str(destination)]
    logger.info("Fetching %s with npm pack", spec)
    try:
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=NPM_TIMEOUT_S
        )
    except FileNotFoundError:
        raise ViewerInstallError(
            f"{npm!r} was not found: install Node.js with npm (Debian: apt-get "
            f"install npm), or pass --tarball with a file from `npm pack {spec}`"
        ) from None
    except subprocess.TimeoutExpired:
        raise ViewerInstallError(
            f"npm pack {spec} took over {NPM_TIMEOUT_S:.0f} s; check the npm "
            "registry is reachable (npm config get registry)"
        ) from None
    if done.returncode != 0:
        raise ViewerInstallError(
            f"npm pack {spec} failed with exit code {done.returncode}: "
            f"{done.stderr.strip()[-2000:]!r}"
        )
    tarballs = sorted(destination.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ViewerInstallError(
            f"npm pack {spec} left {len(tarballs)} tarballs in {str(destination)!r}, "
            "expected one"
        )
    return tarballs[0]


def _check_integrity(tarball: Path, expected: str) -> None:
    found = tarball_integrity(tarball)
    if found != expected:
        raise ViewerInstallError(
            f"{str(tarball)!r} has integrity {found!r}, but {OHIF_PACKAGE} "
            f"{OHIF_VERSION} is {expected!r}; use the tarball of exactly "
            "that version"
        )


def _unpack_dist(tarball: Path, work: Path) -> Path:
    """Extract ``package/dist`` alone, refusing links and paths that leave it."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(_DIST)]
            if not any(m.name == _DIST + "index.html" for m in members):
                raise ViewerInstallError(
                    f"{str(tarball)!r} holds no {_DIST}index.html; it is not the "
                    f"prebuilt {OHIF_PACKAGE} app"
                )
            archive.extractall(work, members=members, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise ViewerInstallError(
            f"{str(tarball)!r} cannot be unpacked safely: {error}"
        ) from None
    return work / _DIST


def _rebase(dist: Path, base_path: str) -> None:
    index = dist / "index.html"
    index.write_text(
        rebase_index_html(index.read_text(encoding="utf-8"), base_path),
        encoding="utf-8",
    )
    manifest = dist / "manifest.json"
    if manifest.is_file():
        text = manifest.read_text(encoding="utf-8")
        manifest.write_text(rebase_manifest(text, base_path), encoding="utf-8")
    for stylesheet in dist.glob("*.css"):
        text = stylesheet.read_text(encoding="utf-8")
        stylesheet.write_text(rebase_stylesheet(text, base_path), encoding="utf-8")
    changed = 0
    for bundle in dist.glob("*.js"):
        data, count = rebase_bundle(bundle.read_bytes(), base_path)
        if count:
            bundle.write_bytes(data)
            changed += count
    if changed == 0:
        raise ViewerInstallError(
            "No bundle sets webpack's public path to '/'; this OHIF build is laid "
            f"out differently from {OHIF_PACKAGE} {OHIF_VERSION}"
        )


def _configure(dist: Path, base_path: str) -> None:
    config = app_config_js(base_path, DICOMWEB_PATH)
    (dist / "app-config.js").write_text(config, encoding="utf-8")
    record = {"package": OHIF_PACKAGE, "version": OHIF_VERSION, "base_path": base_path}
    (dist / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _check_target(folder: Path) -> None:
    """Refuse a folder that holds anything but an earlier install."""
    if folder.exists() and not folder.is_dir():
        raise ViewerInstallError(
            f"{str(folder)!r} is a file; the viewer needs a folder there"
        )
    if folder.is_dir() and read_marker(folder) is None and any(folder.iterdir()):
        raise ViewerInstallError(
            f"{str(folder)!r} is not empty and holds no {MARKER}; choose an "
            "empty or new folder for the viewer"
        )


def _swap_in(dist: Path, folder: Path, work: Path) -> None:
    """Replace ``folder`` by ``dist``, moving an earlier install aside first."""
    _check_target(folder)
    if folder.exists():
        os.replace(folder, work / "previous")
    os.replace(dist, folder)


def install_viewer(
    folder: Path, tarball: Path | None = None, integrity: str = OHIF_INTEGRITY
) -> InstalledViewer:
    """Install the pinned OHIF into ``folder``, fetching it with npm unless given.

    ``integrity`` is the tarball's expected npm integrity string; only tests
    change it, to install a small stand-in for the real package.
    """
    folder = folder.resolve()
    _check_target(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Work beside the target, so the final move is a rename on one file system.
    with tempfile.TemporaryDirectory(
        prefix=".viewer-install-", dir=folder.parent
    ) as work_name:
        work = Path(work_name)
        source = tarball if tarball is not None else npm_pack(work)
        _check_integrity(source, integrity)
        dist = _unpack_dist(source, work / "unpacked")
        _rebase(dist, BASE_PATH)
        _configure(dist, BASE_PATH)
        _swap_in(dist, folder, work)
    logger.info("Installed %s %s in %s", OHIF_PACKAGE, OHIF_VERSION, folder)
    return InstalledViewer(folder, OHIF_PACKAGE, OHIF_VERSION, BASE_PATH)

"""Fixtures for the viewer: a stand-in OHIF tarball, the real one, a browser."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dicomvault.settings import Settings
from viewer.install import read_marker, tarball_integrity

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    # The end-to-end test skips without Playwright; the others need none.
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)

INDEX_HTML = (
    '<!doctype html><html><head><link rel="manifest" href="/manifest.json">'
    '<script src="/app-config.js"></script>'
    '<script>window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.abc.js"></script>'
    '<link href="/app.bundle.css" rel="stylesheet"></head>'
    '<body><div id="root"></div></body></html>'
)
APP_BUNDLE = b'(() => {\n__webpack_require__.p = "/";\n})();\n'
FAKE_DIST = {
    "index.html": INDEX_HTML.encode(),
    "app.bundle.abc.js": APP_BUNDLE,
    "12.bundle.def.js": b"console.log('a chunk without a runtime');\n",
    "app.bundle.css": b"@font-face{src:url(/f.woff2)}",
    "app-config.js": b"window.config = {dataSources: []};\n",
    "manifest.json": json.dumps({"icons": [{"src": "/assets/i.png"}]}).encode(),
    "codec.wasm": b"\x00asm\x01\x00\x00\x00",
    "assets/i.png": b"\x89PNG\r\n\x1a\n",
}


@pytest.fixture
def fake_tarball(tmp_path: Path) -> tuple[Path, str]:
    """A gzip tarball laid out like @ohif/app's, and its npm integrity string."""
    path = tmp_path / "ohif-app-0.0.0.tgz"
    files = {f"package/dist/{name}": data for name, data in FAKE_DIST.items()}
    files["package/package.json"] = b'{"name": "@ohif/app"}'
    write_tarball(path, files)
    return path, tarball_integrity(path)


def write_tarball(path: Path, files: dict[str, bytes]) -> None:
    """A gzip tarball holding ``files`` (name to content), as npm packs them."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def installed_viewer() -> Path:
    """The OHIF install the end-to-end test serves; skips when there is none."""
    configured = os.environ.get("DICOMVAULT_TEST_VIEWER_DIR")
    folder = Path(configured) if configured else Settings().resolved_viewer_dir
    if read_marker(folder) is None:
        pytest.skip(
            f"OHIF is not installed in {folder}: run `dicomvault install-viewer` "
            "(needs npm) or set DICOMVAULT_TEST_VIEWER_DIR to an installed viewer"
        )
    return folder


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's headless Chromium driven by Playwright, with a fresh profile."""
    if sync_playwright is None:
        pytest.skip("Playwright is not installed: pip install playwright")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium chromium-driver")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()

"""Serving the installed viewer at /viewer: files, types and browser routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.conftest import start_server, stop_server
from viewer.app import viewer_routes
from viewer.install import install_viewer

PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def viewer_folder(tmp_path: Path, fake_tarball: tuple[Path, str]) -> Path:
    """A viewer installed from the stand-in tarball."""
    return install_viewer(tmp_path / "viewer", *fake_tarball).folder


@pytest.fixture
async def client(viewer_folder: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that serves only the viewer."""
    app = Starlette(routes=viewer_routes(viewer_folder))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_webassembly_is_served_as_application_wasm(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/viewer/codec.wasm")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/wasm"
    assert response.content == b"\x00asm\x01\x00\x00\x00"


async def test_scripts_are_javascript_and_index_is_revalidated(
    client: httpx.AsyncClient,
) -> None:
    script = await client.get("/viewer/app.bundle.abc.js")
    index = await client.get("/viewer/", headers=PAGE)

    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert index.headers["content-type"].startswith("text/html")
    assert index.headers["cache-control"] == "no-cache"
    config = await client.get("/viewer/app-config.js")
    assert config.headers["cache-control"] == "no-cache"


async def test_a_page_route_of_the_app_answers_index_html(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3", headers=PAGE)

    assert response.status_code == 200
    assert 'window.PUBLIC_URL="/viewer/"' in response.text


async def test_a_missing_asset_is_404_not_the_page(
    client: httpx.AsyncClient,
) -> None:
    script = await client.get("/viewer/no-such-chunk.js", headers={"Accept": "*/*"})
    image = await client.get("/viewer/assets/none.png", headers={"Accept": "image/*"})

    assert (script.status_code, image.status_code) == (404, 404)


async def test_the_bare_mount_redirects_keeping_the_query(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/viewer?x=1", follow_redirects=False)

    assert response.status_code == 308
    assert response.headers["location"].endswith("/viewer/?x=1")


async def test_unchanged_file_answers_not_modified(client: httpx.AsyncClient) -> None:
    etag = (await client.get("/viewer/codec.wasm")).headers["etag"]

    response = await client.get("/viewer/codec.wasm", headers={"If-None-Match": etag})

    assert response.status_code == 304


async def test_paths_cannot_leave_the_viewer_folder(
    client: httpx.AsyncClient, viewer_folder: Path
) -> None:
    (viewer_folder.parent / "secret.txt").write_text("no")

    for path in ("/viewer/../secret.txt", "/viewer/%2e%2e/secret.txt"):
        assert (await client.get(path)).text != "no"


def test_no_routes_when_nothing_is_installed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="viewer.app"):
        assert viewer_routes(tmp_path / "absent") == []

    assert "dicomvault install-viewer" in caplog.text


@pytest.mark.timeout(120)
def test_serve_mounts_the_viewer_beside_dicomweb(
    tmp_path: Path, viewer_folder: Path
) -> None:
    server = start_server(
        tmp_path / "data", {"DICOMVAULT_VIEWER_DIR": str(viewer_folder)}
    )
    try:
        page = httpx.get(f"{server.base_url}/viewer/", headers=PAGE, timeout=10)
        studies = httpx.get(
            f"{server.dicomweb_url}/studies",
            headers={"Accept": "application/dicom+json"},
            timeout=10,
        )
    finally:
        code = stop_server(server)

    assert page.status_code == 200
    assert 'src="/viewer/app-config.js"' in page.text
    assert studies.status_code == 200
    assert code == 0, server.log()
    assert "Serving @ohif/app" in server.log()

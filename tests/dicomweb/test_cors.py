"""CORS for browser viewers on other origins, set by DICOMVAULT_CORS_ALLOWED_ORIGINS."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dicomvault.settings import SettingsError, load_settings
from tests.conftest import RunningServer, start_server, stop_server
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, part10

pytestmark = pytest.mark.timeout(120)

VIEWER = "http://viewer.example:3000"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that lets one viewer origin in."""
    running = start_server(
        tmp_path_factory.mktemp("cors") / "data",
        {"DICOMVAULT_CORS_ALLOWED_ORIGINS": f"{VIEWER}, https://other.example"},
    )
    yield running
    assert stop_server(running) == 0, running.log()


def test_preflight_from_an_allowed_origin_is_answered(
    cors_server: RunningServer,
) -> None:
    response = httpx.options(
        f"{cors_server.dicomweb_url}/studies",
        headers={
            "Origin": VIEWER,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept, if-none-match",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == VIEWER
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "if-none-match" in response.headers["access-control-allow-headers"]


def test_simple_request_exposes_the_etag(cors_server: RunningServer) -> None:
    ds = make_ct()
    assert post_instances(cors_server.dicomweb_url, [part10(ds)]).status_code == 200
    response = httpx.get(
        f"{cors_server.dicomweb_url}/studies/{ds.StudyInstanceUID}/metadata",
        headers={"Origin": VIEWER},
    )
    assert response.headers["access-control-allow-origin"] == VIEWER
    assert "ETag" in response.headers["access-control-expose-headers"]


def test_paging_and_counts_are_readable_cross_origin(
    cors_server: RunningServer,
) -> None:
    response = httpx.head(
        f"{cors_server.dicomweb_url}/studies", headers={"Origin": VIEWER}
    )
    exposed = response.headers["access-control-expose-headers"].split(",")
    assert {"Link", "X-Total-Count"} <= {name.strip() for name in exposed}


def test_other_origins_get_no_cors_headers(cors_server: RunningServer) -> None:
    response = httpx.get(
        f"{cors_server.dicomweb_url}/studies", headers={"Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{cors_server.dicomweb_url}/studies",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "GET",
        },
    )
    assert preflight.status_code == 400


def test_by_default_no_origin_is_allowed(server: RunningServer) -> None:
    response = httpx.get(f"{server.dicomweb_url}/studies", headers={"Origin": VIEWER})
    assert "access-control-allow-origin" not in response.headers


def test_an_origin_with_a_path_stops_start_up() -> None:
    with pytest.raises(SettingsError, match="cors_allowed_origins"):
        load_settings({"DICOMVAULT_CORS_ALLOWED_ORIGINS": "https://v.example/app"})
    allowed = load_settings({"DICOMVAULT_CORS_ALLOWED_ORIGINS": "*"})
    assert allowed.cors_allowed_origins == ("*",)

"""A method a DICOMweb path does not take: 405 naming every method it does."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningServer
from tests.factory import new_uid

pytestmark = pytest.mark.timeout(60)


def _allowed(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "PUT"])
def test_studies_names_search_and_store(server: RunningServer, method: str) -> None:
    response = httpx.request(method, f"{server.dicomweb_url}/studies", timeout=30)
    assert response.status_code == 405
    assert _allowed(response) == {"GET", "HEAD", "POST"}


def test_a_study_names_retrieve_and_store(server: RunningServer) -> None:
    response = httpx.delete(f"{server.dicomweb_url}/studies/{new_uid()}", timeout=30)
    assert response.status_code == 405
    assert _allowed(response) == {"GET", "HEAD", "POST"}


def test_search_and_retrieve_still_answer_head(server: RunningServer) -> None:
    studies = httpx.head(f"{server.dicomweb_url}/studies", timeout=30)
    assert studies.status_code == 200
    missing = httpx.head(f"{server.dicomweb_url}/studies/{new_uid()}", timeout=30)
    assert missing.status_code == 404

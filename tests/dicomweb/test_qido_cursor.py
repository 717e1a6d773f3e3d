"""QIDO-RS paging cursors: a forged one is refused with 400, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.timeout(120)


def _qido(server: RunningServer, path: str, params: Any = None) -> httpx.Response:
    return httpx.get(f"{server.dicomweb_url}{path}", params=params, timeout=30)


def _cursor(order: str, values: list[Any]) -> str:
    data = json.dumps({"l": "STUDY", "o": order, "k": values}).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    ("order", "values"),
    [
        ("", [99999999999999999999999]),
        ("", [-99999999999999999999999]),
        ("", [2**63]),
        ("PatientName", ["\u0000", 1]),
        ("PatientName", ["x\u0000y", 1]),
        ("PatientName", ["\ud800", 1]),
        ("-StudyDate", ["20200101", 2**64]),
    ],
)
def test_a_cursor_holding_values_no_column_can_hold_answers_400(
    server: RunningServer, order: str, values: list[Any]
) -> None:
    params = {"cursor": _cursor(order, values)}
    if order:
        params["orderby"] = order
    response = _qido(server, "/studies", params)
    assert response.status_code == 400, response.text
    assert "cursor" in response.text

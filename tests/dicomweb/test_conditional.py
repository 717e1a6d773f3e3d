"""ETag and If-None-Match on metadata (RFC 9110 13.1.2) against a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningServer
from tests.dicomweb.stow_helpers import post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(120)


def test_unchanged_metadata_answers_304_and_a_new_instance_changes_the_etag(
    server: RunningServer,
) -> None:
    study, series = new_uid(), new_uid()
    first = make_ct(study=study, series=series, InstanceNumber=1)
    assert post_instances(server.dicomweb_url, [part10(first)]).status_code == 200
    url = f"{server.dicomweb_url}/studies/{study}/metadata"
    response = httpx.get(url)
    etag = response.headers["etag"]
    assert response.status_code == 200 and etag.startswith('"')

    again = httpx.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    weak = httpx.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304

    second = make_ct(study=study, series=series, InstanceNumber=2)
    assert post_instances(server.dicomweb_url, [part10(second)]).status_code == 200
    changed = httpx.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and len(changed.json()) == 2
    assert changed.headers["etag"] != etag


def test_series_and_instance_metadata_carry_etags(server: RunningServer) -> None:
    ds = make_ct()
    assert post_instances(server.dicomweb_url, [part10(ds)]).status_code == 200
    base = f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}"
    series = f"{base}/series/{ds.SeriesInstanceUID}"
    for url in (
        f"{series}/metadata",
        f"{series}/instances/{ds.SOPInstanceUID}/metadata",
    ):
        etag = httpx.get(url).headers["etag"]
        assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert httpx.get(url, headers={"If-None-Match": '"x"'}).status_code == 200

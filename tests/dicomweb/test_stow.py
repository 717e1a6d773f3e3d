"""STOW-RS against a real server: statuses, failure reasons, and nothing lost."""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dimse._stored import split_part10
from tests.conftest import RunningServer
from tests.dicomweb.stow_helpers import multipart_body, post_instances
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(120)

FAILED = "00081198"
REFERENCED = "00081199"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
SOP_INSTANCE = "00081155"
STOW_CHUNKY = 'multipart/related; type="application/dicom"; boundary=chunky'


def _failed_reasons(body: dict[str, Any]) -> list[int]:
    return [item[FAILURE_REASON]["Value"][0] for item in body[FAILED]["Value"]]


def _stored_uids(body: dict[str, Any]) -> list[str]:
    return [item[SOP_INSTANCE]["Value"][0] for item in body[REFERENCED]["Value"]]


def _instance_url(server: RunningServer, study: str, series: str, sop: str) -> str:
    return f"{server.dicomweb_url}/studies/{study}/series/{series}/instances/{sop}"


def _fetch(server: RunningServer, study: str, series: str, sop: str) -> httpx.Response:
    return httpx.get(
        _instance_url(server, study, series, sop),
        headers={"Accept": "application/dicom"},
        timeout=30,
    )


def test_all_parts_stored_answers_200_with_referenced_sop_sequence(
    server: RunningServer,
) -> None:
    first, second = make_ct(), make_ct()
    response = post_instances(server.dicomweb_url, [part10(first), part10(second)])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    assert FAILED not in body
    assert _stored_uids(body) == [first.SOPInstanceUID, second.SOPInstanceUID]
    retrieve_url = body[REFERENCED]["Value"][0]["00081190"]["Value"][0]
    assert retrieve_url.endswith(f"/instances/{first.SOPInstanceUID}")


def test_some_parts_failing_answers_202_and_stores_the_rest(
    server: RunningServer,
) -> None:
    good = make_ct()
    response = post_instances(server.dicomweb_url, [b"not dicom at all", part10(good)])
    assert response.status_code == 202
    body = response.json()
    assert _failed_reasons(body) == [0xC000]
    assert _stored_uids(body) == [good.SOPInstanceUID]
    assert "Warning" in response.headers


def test_no_part_stored_answers_409(server: RunningServer) -> None:
    response = post_instances(server.dicomweb_url, [b"\x00" * 300])
    assert response.status_code == 409
    assert _failed_reasons(response.json()) == [0xC000]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        'multipart/related; type="application/dicom+xml"; boundary=x',
        "application/dicom",
        "multipart/related; type=application/dicom; boundary=x; =broken",
    ],
)
def test_wrong_media_type_answers_415(server: RunningServer, content_type: str) -> None:
    response = post_instances(
        server.dicomweb_url, [part10(make_ct())], content_type=content_type
    )
    assert response.status_code == 415
    assert response.json()["error"]


def test_instance_of_another_study_fails_while_the_others_are_stored(
    server: RunningServer,
) -> None:
    study = new_uid()
    belongs, stranger = make_ct(study=study), make_ct()
    response = post_instances(
        server.dicomweb_url, [part10(belongs), part10(stranger)], study=study
    )
    assert response.status_code == 202
    body = response.json()
    assert _stored_uids(body) == [belongs.SOPInstanceUID]
    assert body[FAILED]["Value"][0][SOP_INSTANCE]["Value"] == [stranger.SOPInstanceUID]
    assert _failed_reasons(body) == [0xA900]
    assert _fetch(server, stranger.StudyInstanceUID, stranger.SeriesInstanceUID,
                  stranger.SOPInstanceUID).status_code == 404  # fmt: skip


def test_empty_study_instance_uid_fails_with_a_reason_and_others_are_stored(
    server: RunningServer,
) -> None:
    empty, good = make_ct(), make_ct()
    empty.StudyInstanceUID = ""
    response = post_instances(server.dicomweb_url, [part10(empty), part10(good)])
    assert response.status_code == 202
    body = response.json()
    assert _stored_uids(body) == [good.SOPInstanceUID]
    assert len(_failed_reasons(body)) == 1
    assert "StudyInstanceUID" in response.headers["Warning"]


def test_chunked_transfer_encoding_stores_the_instances(server: RunningServer) -> None:
    instances = [make_ct(), make_ct()]
    body = multipart_body(
        [part10(ds) for ds in instances], "chunky", "application/dicom"
    )

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 777):
            yield body[start : start + 777]

    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=pieces(),
        headers={"Content-Type": STOW_CHUNKY},
        timeout=30,
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 200
    for ds in instances:
        fetched = _fetch(server, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                         ds.SOPInstanceUID)  # fmt: skip
        assert fetched.content == part10(ds)


def test_resending_identical_instance_is_a_quiet_success(server: RunningServer) -> None:
    data = part10(make_ct())
    assert post_instances(server.dicomweb_url, [data]).status_code == 200
    again = post_instances(server.dicomweb_url, [data])
    assert again.status_code == 200
    assert "Warning" not in again.headers
    assert WARNING_REASON not in again.json()[REFERENCED]["Value"][0]


def test_changed_content_under_reject_policy_fails_and_keeps_the_original(
    server: RunningServer,
) -> None:
    ds = make_ct()
    original = part10(ds)
    assert post_instances(server.dicomweb_url, [original]).status_code == 200
    ds.StudyDescription = "changed"
    response = post_instances(server.dicomweb_url, [part10(ds)])
    assert response.status_code == 409
    assert _failed_reasons(response.json()) == [0x0111]
    assert "reject" in response.headers["Warning"]
    stored = _fetch(
        server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert stored.content == original


def test_changed_content_under_replace_policy_is_stored_and_said(
    replacing_server: RunningServer,
) -> None:
    ds = make_ct()
    url = replacing_server.dicomweb_url
    assert post_instances(url, [part10(ds)]).status_code == 200
    ds.StudyDescription = "second version"
    newer = part10(ds)
    response = post_instances(url, [newer])
    assert response.status_code == 200
    item = response.json()[REFERENCED]["Value"][0]
    assert item[WARNING_REASON]["Value"] == [0xB000]
    assert "replaced" in response.headers["Warning"]
    fetched = _fetch(replacing_server, ds.StudyInstanceUID, ds.SeriesInstanceUID,
                     ds.SOPInstanceUID)  # fmt: skip
    assert fetched.content == newer


@pytest.mark.parametrize("bad", ["..%2f..%2fetc", "1.2%00.3", "1.2.3%2F..%2F..", "a.b"])
def test_malformed_study_uid_in_stow_path_answers_400(
    server: RunningServer, bad: str
) -> None:
    response = post_instances(server.dicomweb_url, [part10(make_ct())], study=bad)
    assert response.status_code == 400


def test_bad_inputs_leave_what_was_stored_unchanged(server: RunningServer) -> None:
    keeper = make_ct()
    kept = part10(keeper)
    assert post_instances(server.dicomweb_url, [kept]).status_code == 200
    truncated = kept[: len(kept) - 40]
    missing_uid = make_ct(sop=keeper.SOPInstanceUID)
    del missing_uid.SOPInstanceUID
    hostile = make_ct(study=keeper.StudyInstanceUID, series=keeper.SeriesInstanceUID)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the hostile UID
        hostile.SOPInstanceUID = "1.2/../../x"
        hostile_bytes = part10(hostile)
    for payload in (truncated, b"GIF89a" + b"\x00" * 200, part10(missing_uid),
                    hostile_bytes):  # fmt: skip
        response = post_instances(server.dicomweb_url, [payload])
        assert response.status_code == 409, response.text
    fetched = _fetch(server, keeper.StudyInstanceUID, keeper.SeriesInstanceUID,
                     keeper.SOPInstanceUID)  # fmt: skip
    assert fetched.content == kept
    found = httpx.get(
        f"{server.dicomweb_url}/studies/{keeper.StudyInstanceUID}/instances", timeout=30
    ).json()
    assert [f["00080018"]["Value"][0] for f in found] == [keeper.SOPInstanceUID]


def _peak_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_large_request_is_streamed_not_held_in_memory(server: RunningServer) -> None:
    # 256 MiB of pixel data in one part: the server's peak must stay far below.
    ds = make_ct(rows=8192, columns=8192, frames=2)
    body = multipart_body([part10(ds)], "big", "application/dicom")
    before = psutil.Process(server.process.pid).memory_info().rss

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=pieces(),
        headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=big'
        },
        timeout=120,
    )
    assert response.status_code == 200
    peak = _peak_rss_bytes(server.process.pid)
    assert peak - before < 128 * 1024 * 1024, f"peak {peak}, before {before}"


def test_identical_resend_keeps_a_single_object(server: RunningServer) -> None:
    objects = server.data_dir / "objects"
    data = part10(make_ct())
    assert post_instances(server.dicomweb_url, [data]).status_code == 200
    before = sum(1 for p in objects.rglob("*") if p.is_file())
    assert post_instances(server.dicomweb_url, [data, data]).status_code == 200
    assert sum(1 for p in objects.rglob("*") if p.is_file()) == before


def test_multi_valued_sop_instance_uid_fails_cleanly_beside_a_stored_part(
    server: RunningServer,
) -> None:
    good, odd = make_ct(), make_ct()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the second value
        odd.SOPInstanceUID = ["1.2.3", "1.2.4"]
        odd_bytes = part10(odd)
    response = post_instances(server.dicomweb_url, [part10(good), odd_bytes])
    assert response.status_code == 202
    body = response.json()
    assert _stored_uids(body) == [good.SOPInstanceUID]
    assert body[FAILED]["Value"][0][SOP_INSTANCE] == {"vr": "UI"}


def test_series_of_another_study_is_refused_and_files_nothing(
    server: RunningServer,
) -> None:
    victim = make_ct()
    assert post_instances(server.dicomweb_url, [part10(victim)]).status_code == 200
    intruder = make_ct(series=victim.SeriesInstanceUID, PatientName="Attacker^Eve")
    response = post_instances(server.dicomweb_url, [part10(intruder)])
    assert response.status_code == 409
    assert _failed_reasons(response.json()) == [0xA900]
    found = httpx.get(
        f"{server.dicomweb_url}/studies",
        params={"StudyInstanceUID": intruder.StudyInstanceUID},
        timeout=30,
    )
    assert found.json() == []
    series = httpx.get(
        f"{server.dicomweb_url}/studies/{victim.StudyInstanceUID}/instances", timeout=30
    ).json()
    assert [s["00080018"]["Value"][0] for s in series] == [victim.SOPInstanceUID]


def test_failure_notes_name_the_right_part_and_stay_short(
    server: RunningServer,
) -> None:
    first = make_ct()
    changed = make_ct(
        sop=first.SOPInstanceUID,
        study=first.StudyInstanceUID,
        series=first.SeriesInstanceUID,
        StudyDescription="other",
    )
    response = post_instances(
        server.dicomweb_url, [part10(first), part10(changed)] + [b""] * 300
    )
    assert response.status_code == 202
    warning = response.headers["Warning"]
    assert warning.startswith('299 dicomvault "Part 2:')
    assert len(warning) < 8192
    assert "and 291 more" in warning
    assert len(response.json()[FAILED]["Value"]) == 301


def test_concurrent_replacements_of_one_instance_all_succeed(
    replacing_server: RunningServer,
) -> None:
    base = make_ct()
    url = replacing_server.dicomweb_url
    assert post_instances(url, [part10(base)]).status_code == 200
    versions = []
    for n in range(12):
        base.StudyDescription = f"version {n}"
        versions.append(part10(base))

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:

            async def send(data: bytes) -> int:
                body = multipart_body([data], "race", "application/dicom")
                response = await client.post(
                    f"{url}/studies", content=body,
                    headers={"Content-Type": 'multipart/related; '
                             'type="application/dicom"; boundary=race'},
                )  # fmt: skip
                return response.status_code

            return list(await asyncio.gather(*(send(v) for v in versions)))

    assert asyncio.run(send_all()) == [200] * 12
    fetched = _fetch(replacing_server, base.StudyInstanceUID, base.SeriesInstanceUID,
                     base.SOPInstanceUID)  # fmt: skip
    assert fetched.content in versions


def test_same_data_set_with_other_file_meta_is_a_quiet_resend(
    server: RunningServer,
) -> None:
    ds = make_ct()
    first = part10(ds)
    ds.file_meta.SourceApplicationEntityTitle = "MODALITY_2"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    second = buffer.getvalue()
    assert first != second
    assert post_instances(server.dicomweb_url, [first]).status_code == 200
    again = post_instances(server.dicomweb_url, [second])
    assert again.status_code == 200, again.text
    stored = _fetch(
        server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert stored.content == first


def _swap_data_set(declared: str, encoded: str) -> tuple[str, bytes]:
    """A file whose meta declares one transfer syntax, its data set another."""
    ds = make_ct()
    head = part10(ds, declared)
    body = part10(ds, encoded)
    return str(ds.SOPInstanceUID), (
        head[: split_part10(head)[1]] + body[split_part10(body)[1] :]
    )


def test_a_data_set_in_another_vr_encoding_than_declared_fails_with_c000(
    server: RunningServer,
) -> None:
    # Stored, such a file would be served with a transfer syntax that lies.
    implicit_sop, implicit_body = _swap_data_set(
        ExplicitVRLittleEndian, ImplicitVRLittleEndian
    )
    explicit_sop, explicit_body = _swap_data_set(
        ImplicitVRLittleEndian, ExplicitVRLittleEndian
    )
    good = make_ct()
    response = post_instances(
        server.dicomweb_url, [implicit_body, explicit_body, part10(good)]
    )
    assert response.status_code == 202
    body = response.json()
    assert _failed_reasons(body) == [0xC000, 0xC000]
    assert _stored_uids(body) == [good.SOPInstanceUID]
    for sop in (implicit_sop, explicit_sop):
        found = httpx.get(
            f"{server.dicomweb_url}/instances",
            params={"SOPInstanceUID": sop},
            headers={"Accept": "application/dicom+json"},
            timeout=30,
        )
        assert found.status_code == 200 and found.json() == []

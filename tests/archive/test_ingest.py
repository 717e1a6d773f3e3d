"""Ingestor decisions: which character set rule applies, which UIDs must agree.

An instance whose UIDs contradict its request is refused before the index is
asked or the store written; the Ingestor built for those tests has neither.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from typing import Any, cast

import pytest
from pydicom.uid import MRImageStorage

from archive.errors import InstanceMismatch, StudyMismatch
from archive.index import Index
from archive.ingest import DuplicatePolicy, Ingestor, Outcome
from storage.keys import FileKeyProvider
from storage.memory import MemoryStore
from tests.factory import make_ct, new_uid, part10

pytestmark = pytest.mark.timeout(60)


class RecordingStore(MemoryStore):
    """A memory store that remembers every key a write began for."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        self.written.append(key)
        return super().write(key, chunks)


def _ingestor(
    rules: dict[str, str] | None = None,
    index: Index | None = None,
    store: MemoryStore | None = None,
) -> Ingestor:
    unused = cast(Any, None)
    return Ingestor(
        index or unused,
        store or unused,
        FileKeyProvider("test-kek", {1: os.urandom(32)}),
        chunk_bytes=65536,
        duplicate_policy=DuplicatePolicy.REJECT,
        charset_fallbacks=rules,
    )


def test_a_sender_with_its_own_rule_gets_it_and_others_get_the_star_rule() -> None:
    ingestor = _ingestor({"CT_ROOM_2": "GBK", "*": "GB18030"})

    assert ingestor._fallback_for("CT_ROOM_2") == "GBK"
    assert ingestor._fallback_for("CT_ROOM_2 ") == "GBK"
    assert ingestor._fallback_for("MR_ROOM_1") == "GB18030"
    assert ingestor._fallback_for(None) == "GB18030"


def test_without_rules_no_sender_gets_a_fallback() -> None:
    assert _ingestor({})._fallback_for("CT_ROOM_2") is None


@pytest.mark.parametrize(
    ("named", "keyword"),
    [
        ({"expected_sop_class": MRImageStorage}, "SOPClassUID"),
        ({"expected_sop_instance": "1.2.3.4"}, "SOPInstanceUID"),
    ],
)
async def test_an_instance_whose_sop_uids_contradict_its_request_is_never_written(
    named: dict[str, str], keyword: str
) -> None:
    store = RecordingStore()
    ds = make_ct()
    data = part10(ds)
    with pytest.raises(InstanceMismatch, match=keyword) as raised:
        await _ingestor(store=store).store(io.BytesIO(data), len(data), **named)
    assert raised.value.status == 0xA900
    assert store.written == []


async def test_an_instance_of_another_study_than_its_request_is_never_written() -> None:
    store = RecordingStore()
    data = part10(make_ct())
    with pytest.raises(StudyMismatch):
        await _ingestor(store=store).store(io.BytesIO(data), len(data), new_uid())
    assert store.written == []


async def test_an_instance_whose_uids_agree_with_its_request_is_stored(
    index: Index,
) -> None:
    store = RecordingStore()
    ds = make_ct()
    data = part10(ds)
    result = await _ingestor(index=index, store=store).store(
        io.BytesIO(data),
        len(data),
        ds.StudyInstanceUID,
        expected_sop_class=ds.SOPClassUID,
        expected_sop_instance=ds.SOPInstanceUID,
    )
    assert result.outcome is Outcome.STORED
    assert result.sop_instance_uid == ds.SOPInstanceUID
    assert len(store.written) == 1

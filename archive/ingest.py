"""The ingest path shared by every front-end (ARCHITECTURE.md, "Ingest").

parse the header -> validate -> hash -> seal and write the object -> index it
(one statement for an instance of a known series, else one transaction). The
object is written first and the index second; a failure after the write removes
the object again, so no index row ever points at nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO

from archive.errors import (
    DuplicateConflict,
    InstanceMismatch,
    StoreUnavailable,
    StudyMismatch,
)
from archive.index import (
    Index,
    InstanceRow,
    SeriesRow,
    StoredInstance,
    StudyRow,
)
from archive.parse import ParsedInstance, parse_instance
from archive.records import index_rows
from storage.base import ObjectStore
from storage.envelope import seal
from storage.errors import StorageError
from storage.keys import KeyProvider

logger = logging.getLogger(__name__)

_READ_BYTES = 1 << 20


class Outcome(str, Enum):
    """How a store request ended for one instance."""

    STORED = "stored"
    ALREADY_STORED = "already stored"
    REPLACED = "replaced"


class DuplicatePolicy(str, Enum):
    """What happens when a known SOP Instance UID arrives with other content."""

    REJECT = "reject"
    REPLACE = "replace"


@dataclass(frozen=True)
class StoreResult:
    """The outcome of storing one instance, with the UIDs a response names."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    outcome: Outcome


def _file_chunks(fp: BinaryIO) -> Iterator[bytes]:
    fp.seek(0)
    while True:
        chunk = fp.read(_READ_BYTES)
        if not chunk:
            return
        yield chunk


@dataclass(frozen=True)
class Digests:
    """What ingest computes over the bytes, in one pass."""

    # The whole file: fixity checks and the ETag.
    sha256: bytes
    # For ZIP batch downloads, which must announce it before the data.
    crc32: int
    # The data set without its file meta: the same instance sent by another
    # route (STOW, then C-STORE) differs only in the meta.
    content_sha256: bytes


def _digests(fp: BinaryIO, data_set_offset: int) -> Digests:
    whole, content = hashlib.sha256(), hashlib.sha256()
    crc32 = 0
    position = 0
    for chunk in _file_chunks(fp):
        whole.update(chunk)
        crc32 = zlib.crc32(chunk, crc32)
        if position + len(chunk) > data_set_offset:
            content.update(chunk[max(0, data_set_offset - position) :])
        position += len(chunk)
    return Digests(whole.digest(), crc32, content.digest())


def _same_content(existing: StoredInstance, digests: Digests) -> bool:
    if existing.sha256 == digests.sha256:
        return True
    return existing.content_sha256 == digests.content_sha256


def _log_text_decision(parsed: ParsedInstance, source: str | None) -> None:
    """Say how text the declared character set did not explain was read."""
    text = parsed.text
    if text.mislabelled is None and not (text.undeclared and text.fallback):
        if text.replaced:
            logger.warning(
                "Text bytes of an instance from %s fit no declared character "
                "set; kept as U+FFFD (set DICOMVAULT_CHARSET_FALLBACKS)",
                source or "a DICOMweb client",
            )
        return
    why = (
        f"declares {text.mislabelled} but holds bytes that are not UTF-8"
        if text.mislabelled is not None
        else "declares no character set but holds bytes beyond ASCII"
    )
    how = f"decoded as {text.fallback}" if text.fallback else "kept as U+FFFD"
    level = logging.INFO if text.fallback else logging.WARNING
    logger.log(
        level,
        "Instance from %s %s: %s (DICOMVAULT_CHARSET_FALLBACKS)",
        source or "a DICOMweb client",
        why,
        how,
    )


def _check_named_uids(
    parsed: ParsedInstance,
    sop_class_uid: str | None,
    sop_instance_uid: str | None,
    study_instance_uid: str | None,
) -> None:
    """Refuse an instance whose UIDs are not those its request names (None: any).

    PS3.4 B.2.3: a C-STORE data set whose SOP Class or Instance UID contradicts
    its command does not match the SOP class (0xA900).

    Raises
    ------
    InstanceMismatch
        The SOP Class or SOP Instance UID differs.
    StudyMismatch
        The Study Instance UID differs.
    """
    for keyword, found, named in (
        ("SOPClassUID", parsed.sop_class_uid, sop_class_uid),
        ("SOPInstanceUID", parsed.sop_instance_uid, sop_instance_uid),
    ):
        if named is not None and found != named:
            raise InstanceMismatch(
                f"The data set has {keyword} {found!r} but its request names "
                f"{named!r}; send it under the UIDs it holds"
            )
    study = parsed.study_instance_uid
    if study_instance_uid is not None and study != study_instance_uid:
        raise StudyMismatch(
            f"Instance belongs to study {study!r}, "
            f"not to {study_instance_uid!r} named in the request"
        )


def new_object_key() -> str:
    """A random object key: no patient data, no request text, well spread.

    One level of 4096 prefixes: a folder store creates (and syncs) a new folder
    only for the first few thousand objects, and at a hundred million objects
    each folder still holds fewer than 25,000.
    """
    token = secrets.token_hex(16)
    return f"{token[:3]}/{token}"


class Ingestor:
    """Stores instances: one object in the store, one set of rows in the index."""

    def __init__(
        self,
        index: Index,
        store: ObjectStore,
        keys: KeyProvider,
        *,
        chunk_bytes: int,
        duplicate_policy: DuplicatePolicy,
        charset_fallbacks: Mapping[str, str] | None = None,
    ) -> None:
        self._charset_fallbacks = dict(charset_fallbacks or {})
        self._index = index
        self._store = store
        self._keys = keys
        self._chunk_bytes = chunk_bytes
        self._policy = duplicate_policy
        # Removals of objects written for nothing, kept until they finish.
        self._removals: set[asyncio.Future[None]] = set()

    async def store(
        self,
        fp: BinaryIO,
        size: int,
        expected_study: str | None = None,
        source: str | None = None,
        *,
        expected_sop_class: str | None = None,
        expected_sop_instance: str | None = None,
    ) -> StoreResult:
        """Store one Part 10 instance read from a seekable file of ``size`` bytes.

        ``source`` names the sender (the calling AE title over DIMSE) for the
        character set fallback rules; None takes the rule for ``*``. The
        ``expected_*`` UIDs are those the request names (a STOW-RS study, a
        C-STORE command's SOP class and instance); None checks nothing.
        Raises an ``ArchiveError`` subclass naming what was wrong; in that case
        nothing that was stored before has changed.
        """
        key = new_object_key()
        parsed, digests, (study, series, instance) = await asyncio.to_thread(
            self._parse_and_describe, key, fp, size, self._fallback_for(source)
        )
        _log_text_decision(parsed, source)
        _check_named_uids(
            parsed, expected_sop_class, expected_sop_instance, expected_study
        )
        existing = await self._index.find_instance(parsed.sop_instance_uid)
        if existing is not None and _same_content(existing, digests):
            return self._result(parsed, Outcome.ALREADY_STORED)
        if existing is not None and self._policy is DuplicatePolicy.REJECT:
            raise DuplicateConflict(
                f"SOP Instance {parsed.sop_instance_uid!r} is already stored with "
                "other content; the duplicate policy is 'reject'"
            )
        # Object first, index second: no committed row ever points at nothing.
        write = asyncio.ensure_future(
            asyncio.to_thread(self._write_object, key, fp, size)
        )
        try:
            # Shielded: a cancelled request does not stop the write midway.
            await asyncio.shield(write)
        except BaseException:
            self._discard(write, key)
            raise
        # The index write, once begun, runs to its end even if the request is
        # cancelled (a timeout): a statement cut off may still have committed,
        # and then its object must stay. What it did decides the object's fate.
        indexing = asyncio.ensure_future(
            self._index_write(existing is None, study, series, instance)
        )
        try:
            added, old_key = await asyncio.shield(indexing)
        except BaseException:
            indexing.add_done_callback(lambda done: self._settle_object(done, key))
            raise
        if not added:
            # Another sender indexed the same UID between our look-up and now.
            self._remove_later(key)
            return await self._settle_race(parsed, digests)
        if existing is None:
            logger.info("Stored instance (%d bytes)", size)
            return self._result(parsed, Outcome.STORED)
        if old_key is not None:
            await asyncio.to_thread(self._delete_quietly, old_key)
        logger.info("Replaced instance with new content (%d bytes)", size)
        return self._result(parsed, Outcome.REPLACED)

    async def _index_write(
        self, new: bool, study: StudyRow, series: SeriesRow, instance: InstanceRow
    ) -> tuple[bool, str | None]:
        """Insert (``new``) or replace the rows: (added, object key replaced)."""
        if new:
            return await self._index.insert_instance(study, series, instance), None
        return True, await self._index.replace_instance(study, series, instance)

    def _settle_object(
        self, indexing: asyncio.Future[tuple[bool, str | None]], key: str
    ) -> None:
        """After a cancelled request: keep the object if its row was committed."""
        failed = indexing.cancelled() or indexing.exception() is not None
        added, old_key = (False, None) if failed else indexing.result()
        if not added:
            self._remove_later(key)
        elif old_key is not None:
            self._remove_later(old_key)

    def _remove_later(self, key: str) -> None:
        """Remove an object in the background (kept referenced until done)."""
        task = asyncio.ensure_future(asyncio.to_thread(self._delete_quietly, key))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    def _discard(self, write: asyncio.Future[None], key: str) -> None:
        """Remove the object ``write`` makes, once it has been written (or not)."""

        def remove(done: asyncio.Future[None]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # nothing was written (a failed write cleans up after itself)
            self._remove_later(key)

        write.add_done_callback(remove)

    async def _settle_race(
        self, parsed: ParsedInstance, digests: Digests
    ) -> StoreResult:
        winner = await self._index.find_instance(parsed.sop_instance_uid)
        if winner is not None and _same_content(winner, digests):
            return self._result(parsed, Outcome.ALREADY_STORED)
        raise DuplicateConflict(
            f"SOP Instance {parsed.sop_instance_uid!r} was stored concurrently "
            "with other content"
        )

    def _fallback_for(self, source: str | None) -> str | None:
        """The character set rule for a sender: its own, else the one for '*'."""
        rules = self._charset_fallbacks
        if source is not None and source.strip() in rules:
            return rules[source.strip()]
        return rules.get("*")

    def _parse_and_describe(
        self, key: str, fp: BinaryIO, size: int, fallback: str | None
    ) -> tuple[ParsedInstance, Digests, tuple[StudyRow, SeriesRow, InstanceRow]]:
        """Parse, hash and build the index rows: one trip to a worker thread."""
        fp.seek(0)
        parsed = parse_instance(fp, size, fallback_charset=fallback)
        digests = _digests(fp, parsed.data_set_offset)
        study, series, instance = index_rows(
            parsed, object_key=key, object_size=size, sha256=digests.sha256
        )
        values = dict(
            instance.values,
            crc32=digests.crc32,
            content_sha256=digests.content_sha256,
        )
        return parsed, digests, (study, series, InstanceRow(values, instance.metadata))

    def _write_object(self, key: str, fp: BinaryIO, size: int) -> None:
        sealed = seal(_file_chunks(fp), size, self._keys, self._chunk_bytes)
        try:
            self._store.write(key, sealed)
        except (OSError, StorageError) as error:
            raise StoreUnavailable(
                f"The object store refused the write: {error}"
            ) from error

    def _delete_quietly(self, key: str) -> None:
        try:
            self._store.delete(key)
        except (OSError, StorageError):
            # archive/sweep.py finds and removes the orphan later.
            logger.warning("Could not remove object %s after a failed store", key)

    @staticmethod
    def _result(parsed: ParsedInstance, outcome: Outcome) -> StoreResult:
        return StoreResult(
            sop_class_uid=parsed.sop_class_uid,
            sop_instance_uid=parsed.sop_instance_uid,
            study_instance_uid=parsed.study_instance_uid,
            series_instance_uid=parsed.series_instance_uid,
            outcome=outcome,
        )

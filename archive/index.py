"""The archive index on PostgreSQL through asyncpg: rows in, rows out, no DICOM."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from archive._sql import Compiled, compile_count, compile_search
from archive.errors import SeriesMismatch, StoreUnavailable
from archive.query import Query

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyRow:
    """Columns of one study row as ingest fills them."""

    values: dict[str, Any]
    attributes: str


@dataclass(frozen=True)
class SeriesRow:
    """Columns of one series row as ingest fills them."""

    values: dict[str, Any]
    attributes: str


@dataclass(frozen=True)
class InstanceRow:
    """Columns of one instance row as ingest fills them."""

    values: dict[str, Any]
    metadata: str


@dataclass(frozen=True)
class StoredInstance:
    """What the index knows of a stored instance, enough to read it back."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    object_key: str
    object_size: int
    sha256: bytes
    content_sha256: bytes | None
    offsets_valid: bool
    number_of_frames: int | None
    rows: int | None
    columns: int | None
    bits_allocated: int | None
    samples_per_pixel: int | None
    bulk: list[list[Any]]
    frames: list[list[list[int]]] | None
    crc32: int | None = None


_STORED_COLUMNS = (
    "study.study_instance_uid, series.series_instance_uid, instance.sop_instance_uid, "
    "instance.sop_class_uid, instance.transfer_syntax_uid, instance.object_key, "
    "instance.object_size, instance.sha256, instance.content_sha256, "
    "instance.offsets_valid, "
    "instance.number_of_frames, instance.rows, instance.columns, "
    "instance.bits_allocated, instance.samples_per_pixel, instance.bulk, "
    "instance.frames, instance.crc32"
)
_JOIN = (
    "instance JOIN series ON series.pk = instance.series_pk "
    "JOIN study ON study.pk = series.study_pk"
)


def _stored(record: asyncpg.Record) -> StoredInstance:
    frames = record["frames"]
    return StoredInstance(
        study_instance_uid=record["study_instance_uid"],
        series_instance_uid=record["series_instance_uid"],
        sop_instance_uid=record["sop_instance_uid"],
        sop_class_uid=record["sop_class_uid"],
        transfer_syntax_uid=record["transfer_syntax_uid"],
        object_key=record["object_key"],
        object_size=record["object_size"],
        sha256=bytes(record["sha256"]),
        content_sha256=(
            bytes(record["content_sha256"])
            if record["content_sha256"] is not None
            else None
        ),
        offsets_valid=record["offsets_valid"],
        number_of_frames=record["number_of_frames"],
        rows=record["rows"],
        columns=record["columns"],
        bits_allocated=record["bits_allocated"],
        samples_per_pixel=record["samples_per_pixel"],
        bulk=json.loads(record["bulk"]),
        frames=json.loads(frames) if frames is not None else None,
        crc32=record["crc32"],
    )


def _insert_sql(table: str, values: dict[str, Any], extra: dict[str, str]) -> str:
    names = list(values) + list(extra)
    placeholders = [f"${i}" for i in range(1, len(values) + 1)] + list(extra.values())
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(placeholders)})"
    )


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Reset a connection returned to the pool: nothing beyond asyncpg's own.

    asyncpg rolls back an open transaction and drops listeners on every
    release; its default then sends RESET ALL, CLOSE ALL, UNLISTEN * and
    pg_advisory_unlock_all(), one more round trip per query. The archive
    leaves no session state behind: no SET, no LISTEN, cursors only inside
    transactions, and the one session advisory lock (migrations) is unlocked
    where it is taken.
    """


class Index:
    """The index database: a pool of connections and the statements we run."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, pool_size: int) -> Index:
        """Open a connection pool to the index database."""
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=pool_size,
            command_timeout=60,
            reset=_no_session_state,
        )
        assert pool is not None
        return cls(pool)

    def acquire(self) -> Any:
        """A pooled connection, for work such as migrations at start."""
        return self._pool.acquire()

    async def close(self) -> None:
        """Close every connection (waits for queries in flight)."""
        await self._pool.close()

    async def ping(self) -> bool:
        """Tell whether the database answers a trivial query."""
        try:
            return bool(await self._pool.fetchval("SELECT 1"))
        except (OSError, asyncpg.PostgresError):
            return False

    async def find_instance(self, sop_instance_uid: str) -> StoredInstance | None:
        """Look up one instance by SOP Instance UID."""
        record = await self._pool.fetchrow(
            f"SELECT {_STORED_COLUMNS} FROM {_JOIN} "
            "WHERE instance.sop_instance_uid = $1",
            sop_instance_uid,
        )
        return _stored(record) if record is not None else None

    async def set_crc32(self, sop_instance_uid: str, crc32: int) -> None:
        """Record the CRC-32 of an instance stored before ingest took it."""
        await self._pool.execute(
            "UPDATE instance SET crc32 = $2 WHERE sop_instance_uid = $1",
            sop_instance_uid,
            crc32,
        )

    async def insert_instance(
        self, study: StudyRow, series: SeriesRow, instance: InstanceRow
    ) -> bool:
        """Add an instance with its study and series in one transaction.

        Returns False, changing nothing, when the SOP Instance UID is already
        indexed (a concurrent sender won the race). An instance of a series
        already indexed under its study takes one statement (one round trip);
        the first of a series takes the transaction that adds the rows.
        """
        try:
            added = await self._insert_into_known_series(study, series, instance)
            if added is not None:
                return added
            async with self._pool.acquire() as conn, conn.transaction():
                study_pk = await self._upsert_study(conn, study)
                series_pk = await self._upsert_series(conn, series, study_pk)
                values = dict(instance.values, series_pk=series_pk)
                sql = _insert_sql(
                    "instance", values, {"metadata": f"${len(values) + 1}::json"}
                )
                pk = await conn.fetchval(
                    sql + " ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING pk",
                    *values.values(),
                    instance.metadata,
                )
                return pk is not None
        except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError) as error:
            raise StoreUnavailable(f"The index cannot be reached: {error}") from error

    async def _insert_into_known_series(
        self, study: StudyRow, series: SeriesRow, instance: InstanceRow
    ) -> bool | None:
        """Insert into the series if it is indexed under this study, in one statement.

        True when added, False when the SOP Instance UID is already indexed,
        None when the series is not indexed under this study: the caller then
        adds the rows. The foreign key holds the series row while the
        statement runs, as FOR KEY SHARE does in the transaction.
        """
        values = dict(instance.values)
        count = len(values)
        names = ", ".join([*values, "metadata", "series_pk"])
        params = ", ".join(f"${i}" for i in range(1, count + 1))
        row = await self._pool.fetchrow(
            "WITH target AS ("
            " SELECT series.pk FROM series JOIN study ON study.pk = series.study_pk"
            f" WHERE series.series_instance_uid = ${count + 2}"
            f" AND study.study_instance_uid = ${count + 3}),"
            f" added AS (INSERT INTO instance ({names})"
            f" SELECT {params}, ${count + 1}::json, target.pk FROM target"
            " ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING pk)"
            " SELECT EXISTS (SELECT 1 FROM target) AS known,"
            " EXISTS (SELECT 1 FROM added) AS added",
            *values.values(),
            instance.metadata,
            series.values["series_instance_uid"],
            study.values["study_instance_uid"],
        )
        if not row["known"]:
            return None
        return bool(row["added"])

    async def replace_instance(
        self, study: StudyRow, series: SeriesRow, instance: InstanceRow
    ) -> str | None:
        """Swap the indexed instance for a new version; return the old object key."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Concurrent replacements of one UID queue here instead of colliding.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                instance.values["sop_instance_uid"],
            )
            old = await conn.fetchrow(
                "DELETE FROM instance WHERE sop_instance_uid = $1 "
                "RETURNING object_key, series_pk",
                instance.values["sop_instance_uid"],
            )
            study_pk = await self._upsert_study(conn, study)
            series_pk = await self._upsert_series(conn, series, study_pk)
            values = dict(instance.values, series_pk=series_pk)
            sql = _insert_sql(
                "instance", values, {"metadata": f"${len(values) + 1}::json"}
            )
            await conn.execute(sql, *values.values(), instance.metadata)
            if old is None:
                return None
            await self._drop_if_empty(conn, old["series_pk"])
            return str(old["object_key"])

    async def _upsert_study(self, conn: asyncpg.Connection, study: StudyRow) -> int:
        """The study's key, adding the row if it is new.

        An existing row is only read, under FOR KEY SHARE: concurrent senders
        into one study neither wait for each other (an update would lock the
        row until commit) nor lose it to a concurrent removal of an emptied study.
        """
        uid = study.values["study_instance_uid"]
        values = study.values
        insert = _insert_sql(
            "study", values, {"attributes": f"${len(values) + 1}::json"}
        )
        while True:
            pk = await conn.fetchval(
                "SELECT pk FROM study WHERE study_instance_uid = $1 FOR KEY SHARE", uid
            )
            if pk is not None:
                return int(pk)
            # A concurrent first sender makes this wait for its commit, then
            # return nothing; the next look-up finds its row.
            pk = await conn.fetchval(
                insert + " ON CONFLICT (study_instance_uid) DO NOTHING RETURNING pk",
                *values.values(),
                study.attributes,
            )
            if pk is not None:
                return int(pk)

    async def _upsert_series(
        self, conn: asyncpg.Connection, series: SeriesRow, study_pk: int
    ) -> int:
        """The series' key, adding the row if it is new (read like the study)."""
        uid = series.values["series_instance_uid"]
        values = dict(series.values, study_pk=study_pk)
        insert = _insert_sql(
            "series", values, {"attributes": f"${len(values) + 1}::json"}
        )
        while True:
            row = await conn.fetchrow(
                "SELECT pk, study_pk FROM series WHERE series_instance_uid = $1 "
                "FOR KEY SHARE",
                uid,
            )
            if row is None:
                pk = await conn.fetchval(
                    insert + " ON CONFLICT (series_instance_uid) DO NOTHING "
                    "RETURNING pk",
                    *values.values(),
                    series.attributes,
                )
                if pk is None:
                    continue
                return int(pk)
            if row["study_pk"] != study_pk:
                # Raising rolls back the whole transaction, the new study row too.
                raise SeriesMismatch(
                    f"Series {uid!r} is already filed under another study; "
                    "an instance cannot move it"
                )
            return int(row["pk"])

    async def _drop_if_empty(self, conn: asyncpg.Connection, series_pk: int) -> None:
        study_pk = await conn.fetchval(
            "DELETE FROM series WHERE pk = $1 AND NOT EXISTS "
            "(SELECT 1 FROM instance WHERE instance.series_pk = series.pk) "
            "RETURNING study_pk",
            series_pk,
        )
        if study_pk is not None:
            await conn.execute(
                "DELETE FROM study WHERE pk = $1 AND NOT EXISTS "
                "(SELECT 1 FROM series WHERE series.study_pk = study.pk)",
                study_pk,
            )

    async def known_object_keys(self, keys: Sequence[str]) -> set[str]:
        """The subset of the given object keys that some instance row uses."""
        rows = await self._pool.fetch(
            "SELECT object_key FROM instance WHERE object_key = ANY($1::text[])",
            list(keys),
        )
        return {row["object_key"] for row in rows}

    async def search(
        self, query: Query, tags: Collection[str] | None = None
    ) -> tuple[list[asyncpg.Record], Compiled]:
        """Run a compiled search; return the rows and what was compiled.

        ``tags``: the only instance attributes the caller needs (None: all).
        """
        compiled = compile_search(query, tags)
        logger.debug("Search SQL %s", compiled.sql)
        rows = await self._pool.fetch(compiled.sql, *compiled.params)
        return rows, compiled

    async def count(self, query: Query) -> tuple[int, tuple[str, ...]]:
        """The number of matches of a query; also the keys not matched."""
        compiled = compile_count(query)
        logger.debug("Count SQL %s", compiled.sql)
        total = await self._pool.fetchval(compiled.sql, *compiled.params)
        return int(total), compiled.unsupported

    async def backfill_person_names(
        self,
        derive: Callable[[str | None, str], dict[str, Any]],
        batch: int = 500,
    ) -> int:
        """Fill person name columns left NULL by an older schema; return the count.

        ``derive(value, column)`` gives the columns of one name. Rows are taken
        with SKIP LOCKED, so several nodes starting at once share the work.
        """
        done = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT pk, patient_name, referring_physician_name FROM study "
                    "WHERE patient_name_words IS NULL ORDER BY pk LIMIT $1 "
                    "FOR UPDATE SKIP LOCKED",
                    batch,
                )
                for row in rows:
                    values = {
                        **derive(row["patient_name"], "patient_name"),
                        **derive(
                            row["referring_physician_name"], "referring_physician_name"
                        ),
                    }
                    names = ", ".join(
                        f"{name} = ${i}" for i, name in enumerate(values, start=2)
                    )
                    await conn.execute(
                        f"UPDATE study SET {names} WHERE pk = $1",
                        row["pk"],
                        *values.values(),
                    )
            if not rows:
                return done
            done += len(rows)

    async def study_counts(self, study_pks: Sequence[int]) -> dict[int, asyncpg.Record]:
        """Series count, instance count, modalities and SOP classes per study."""
        rows = await self._pool.fetch(
            "SELECT series.study_pk, count(DISTINCT series.pk) AS series_count, "
            "count(instance.pk) AS instance_count, "
            "array_remove(array_agg(DISTINCT NULLIF(series.modality, '')), NULL) "
            "AS modalities, array_agg(DISTINCT instance.sop_class_uid) AS sop_classes "
            "FROM series JOIN instance ON instance.series_pk = series.pk "
            "WHERE series.study_pk = ANY($1::bigint[]) GROUP BY series.study_pk",
            list(study_pks),
        )
        return {row["study_pk"]: row for row in rows}

    async def series_counts(self, series_pks: Sequence[int]) -> dict[int, int]:
        """Instance count per series."""
        rows = await self._pool.fetch(
            "SELECT series_pk, count(*) AS n FROM instance "
            "WHERE series_pk = ANY($1::bigint[]) GROUP BY series_pk",
            list(series_pks),
        )
        return {row["series_pk"]: row["n"] for row in rows}

    async def patient_counts(
        self, patients: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], asyncpg.Record]:
        """Study, series and instance counts per (patient_id, issuer)."""
        rows = await self._pool.fetch(
            "SELECT study.patient_id, study.issuer_of_patient_id, "
            "count(DISTINCT study.pk) AS studies, count(DISTINCT series.pk) AS series, "
            "count(instance.pk) AS instances FROM study "
            "JOIN series ON series.study_pk = study.pk "
            "JOIN instance ON instance.series_pk = series.pk "
            "WHERE (study.patient_id, study.issuer_of_patient_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[])) "
            "GROUP BY study.patient_id, study.issuer_of_patient_id",
            [p[0] for p in patients],
            [p[1] for p in patients],
        )
        return {(r["patient_id"], r["issuer_of_patient_id"]): r for r in rows}

    async def stored_instances(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[StoredInstance]:
        """Every stored instance of a study, series or one instance, in order."""
        sql, args = self._scoped(
            study_instance_uid, series_instance_uid, sop_instance_uid
        )
        records = await self._pool.fetch(
            f"SELECT {_STORED_COLUMNS} FROM {_JOIN} WHERE {sql} "
            "ORDER BY series.series_number NULLS LAST, series.pk, "
            "instance.instance_number NULLS LAST, instance.pk",
            *args,
        )
        return [_stored(record) for record in records]

    async def metadata(
        self,
        study_instance_uid: str,
        series_instance_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[str]:
        """The stored DICOM JSON (as text) of each instance in scope, in order."""
        sql, args = self._scoped(
            study_instance_uid, series_instance_uid, sop_instance_uid
        )
        records = await self._pool.fetch(
            f"SELECT instance.metadata FROM {_JOIN} WHERE {sql} "
            "ORDER BY series.series_number NULLS LAST, series.pk, "
            "instance.instance_number NULLS LAST, instance.pk",
            *args,
        )
        return [record["metadata"] for record in records]

    @staticmethod
    def _scoped(
        study: str, series: str | None, sop: str | None
    ) -> tuple[str, list[str]]:
        conditions = ["study.study_instance_uid = $1"]
        args = [study]
        if series is not None:
            args.append(series)
            conditions.append(f"series.series_instance_uid = ${len(args)}")
        if sop is not None:
            args.append(sop)
            conditions.append(f"instance.sop_instance_uid = ${len(args)}")
        return " AND ".join(conditions), args

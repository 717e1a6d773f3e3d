"""QIDO study searches over an index of one million synthetic instances.

Fills the index of a throwaway embedded PostgreSQL (pgserver) with synthetic
study, series and instance rows by COPY through asyncpg (no objects, no pixel
data), then times the standard study searches through ``Archive.search``, each
a page of 100 with its computed counts, and prints p50/p99 per search.

Run: ``python -m bench.qido_million [--instances 1000000] [--runs 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archive.attributes import Level
from archive.index import Index
from archive.ingest import DuplicatePolicy, Ingestor
from archive.migrate import apply_migrations, migrations_dir
from archive.query import OrderKey, Query
from archive.records import person_name_columns
from archive.service import Archive
from dicomvault.embedded_pg import EmbeddedPostgres
from storage.keys import FileKeyProvider
from storage.memory import MemoryStore

logger = logging.getLogger(__name__)

UID_ROOT = "1.2.826.0.1.3680043.10.1393.77"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
PAGE = 100
TARGET_P99_MS = 50.0
_SURNAMES = [
    ("Wang", "王", "wáng"), ("Li", "李", "lǐ"), ("Zhang", "张", "zhāng"),
    ("Liu", "刘", "liú"), ("Chen", "陈", "chén"), ("Yang", "杨", "yáng"),
    ("Smith", "", ""), ("Müller", "", ""), ("Garcia", "", ""), ("Dubois", "", ""),
    ("Rossi", "", ""), ("Novak", "", ""), ("Kowalski", "", ""), ("Jensen", "", ""),
]  # fmt: skip
_GIVEN = [
    ("XiaoDong", "小东", "xiǎodōng"), ("Na", "娜", "nà"), ("Wei", "伟", "wěi"),
    ("Anna", "", ""), ("John", "", ""), ("Marie", "", ""), ("Lukas", "", ""),
    ("Sofia", "", ""), ("Mei", "美", "měi"), ("Jun", "军", "jūn"),
]  # fmt: skip
_MODALITIES = ["CT", "MR", "CR", "US", "DX", "NM", "PT", "SR"]
_STUDY_COLUMNS = [
    "pk", "study_instance_uid", "patient_id", "issuer_of_patient_id",
    "patient_name", "patient_name_alphabetic_ci", "patient_name_ideographic_ci",
    "patient_name_phonetic_ci", "patient_name_words", "patient_birth_date",
    "patient_sex", "study_date", "study_time", "accession_number", "study_id",
    "study_description", "referring_physician_name",
    "referring_physician_name_alphabetic_ci",
    "referring_physician_name_ideographic_ci",
    "referring_physician_name_phonetic_ci", "referring_physician_name_words",
    "attributes",
]  # fmt: skip
_SERIES_COLUMNS = [
    "pk", "study_pk", "series_instance_uid", "modality", "series_number",
    "series_description", "attributes",
]  # fmt: skip
_INSTANCE_COLUMNS = [
    "pk", "series_pk", "sop_instance_uid", "sop_class_uid", "instance_number",
    "rows", "columns", "bits_allocated", "samples_per_pixel", "transfer_syntax_uid",
    "object_key", "object_size", "sha256", "offsets_valid", "metadata",
]  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """How many rows of each kind the benchmark makes."""

    instances: int
    instances_per_series: int
    max_series_per_study: int
    studies_per_patient: float

    @property
    def series(self) -> int:
        """Series rows (every series has the same number of instances)."""
        return self.instances // self.instances_per_series


def _value(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values and values[0] else {"vr": vr}


def _person_name(rng: random.Random) -> str:
    surname, given = rng.choice(_SURNAMES), rng.choice(_GIVEN)
    groups = [f"{surname[0]}^{given[0]}"]
    if surname[1] and given[1]:
        groups += [f"{surname[1]}^{given[1]}", f"{surname[2]}^{given[2]}"]
    return "=".join(groups)


def _pn_json(full: str) -> dict[str, Any]:
    names = ("Alphabetic", "Ideographic", "Phonetic")
    return _value("PN", {k: g for k, g in zip(names, full.split("=")) if g})


def _study_date(rng: random.Random, days_later: int = 0) -> str:
    day = rng.randrange(0, 365 * 10) + days_later
    return time.strftime("%Y%m%d", time.gmtime(1420070400 + day * 86400))


class Rows:
    """Deterministic synthetic rows, and what the searches may ask for."""

    def __init__(self, shape: Shape, seed: int) -> None:
        self.shape = shape
        self.rng = random.Random(seed)
        self.patient_ids: list[str] = []
        self.accessions: list[str] = []
        self.study_series: list[int] = []
        self._plan()

    def _plan(self) -> None:
        remaining = self.shape.series
        while remaining > 0:
            count = min(remaining, self.rng.randint(1, self.shape.max_series_per_study))
            self.study_series.append(count)
            remaining -= count

    def studies(self) -> Iterator[tuple[Any, ...]]:
        """Study rows, patients reused so that each has a few studies."""
        patient: tuple[str, str, str, str] = ("", "", "", "")
        for pk in range(1, len(self.study_series) + 1):
            if not self.patient_ids or self.rng.random() > 1 - 1 / (
                self.shape.studies_per_patient
            ):
                number = len(self.patient_ids) + 1
                patient = (
                    f"PID{number:08d}",
                    _person_name(self.rng),
                    f"19{self.rng.randrange(30, 99)}0{self.rng.randrange(1, 9)}15",
                    self.rng.choice("MFO"),
                )
                self.patient_ids.append(patient[0])
            yield self._study(pk, patient)

    def _study(self, pk: int, patient: tuple[str, str, str, str]) -> tuple[Any, ...]:
        patient_id, name, birth, sex = patient
        uid = f"{UID_ROOT}.1.{pk}"
        date = _study_date(self.rng)
        clock = f"{self.rng.randrange(0, 24):02d}{self.rng.randrange(0, 60):02d}00"
        accession = f"A{pk:09d}"
        self.accessions.append(accession)
        referring = "Ref^Doctor"
        attributes = {
            "00080005": _value("CS", "ISO_IR 192"),
            "00080020": _value("DA", date),
            "00080030": _value("TM", clock),
            "00080050": _value("SH", accession),
            "00080090": _pn_json(referring),
            "00081030": _value("LO", "Synthetic study"),
            "00100010": _pn_json(name),
            "00100020": _value("LO", patient_id),
            "00100030": _value("DA", birth),
            "00100040": _value("CS", sex),
            "0020000D": _value("UI", uid),
            "00200010": _value("SH", f"S{pk}"),
        }
        names = person_name_columns(name, "patient_name")
        doctor = person_name_columns(referring, "referring_physician_name")
        return (
            pk, uid, patient_id, "", *names.values(), birth, sex, date,
            f"{clock}.000000", accession, f"S{pk}", "Synthetic study",
            *doctor.values(), json.dumps(attributes),
        )  # fmt: skip

    def series(self) -> Iterator[tuple[Any, ...]]:
        """Series rows, numbered within their study."""
        pk = 0
        for study_pk, count in enumerate(self.study_series, start=1):
            for number in range(1, count + 1):
                pk += 1
                modality = self.rng.choice(_MODALITIES)
                uid = f"{UID_ROOT}.2.{pk}"
                attributes = {
                    "00080060": _value("CS", modality),
                    "0008103E": _value("LO", "Synthetic series"),
                    "0020000E": _value("UI", uid),
                    "00200011": _value("IS", number),
                }
                yield (
                    pk, study_pk, uid, modality, number, "Synthetic series",
                    json.dumps(attributes),
                )  # fmt: skip

    def instances(self) -> Iterator[tuple[Any, ...]]:
        """Instance rows; the metadata is small, the searches here never read it."""
        per_series = self.shape.instances_per_series
        digest = secrets.token_bytes(32)
        for pk in range(1, self.shape.series * per_series + 1):
            series_pk = (pk - 1) // per_series + 1
            uid = f"{UID_ROOT}.3.{pk}"
            sop_class = MR_IMAGE_STORAGE if pk % 7 == 0 else CT_IMAGE_STORAGE
            metadata = {
                "00080016": _value("UI", sop_class),
                "00080018": _value("UI", uid),
            }
            yield (
                pk, series_pk, uid, sop_class, (pk - 1) % per_series + 1, 512, 512,
                16, 1, EXPLICIT_VR_LITTLE_ENDIAN, f"bench/{pk:012d}", 525_000,
                digest, True, json.dumps(metadata),
            )  # fmt: skip


async def fill(index: Index, rows: Rows) -> None:
    """COPY every row in, then reset the sequences and ANALYZE."""
    async with index.acquire() as conn:
        for table, columns, records in (
            ("study", _STUDY_COLUMNS, rows.studies()),
            ("series", _SERIES_COLUMNS, rows.series()),
            ("instance", _INSTANCE_COLUMNS, rows.instances()),
        ):
            started = time.perf_counter()
            await conn.copy_records_to_table(table, records=records, columns=columns)
            count = await conn.fetchval(f"SELECT count(*) FROM {table}")
            print(f"  {table}: {count} rows in {time.perf_counter() - started:.1f} s")
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'pk'), "
                f"(SELECT max(pk) FROM {table}))"
            )
        await conn.execute("ANALYZE")


@dataclass(frozen=True)
class Search:
    """One named study search; ``make`` gives a fresh query for each run."""

    name: str
    make: Callable[[random.Random], Query]


def _study(rng: random.Random, **keys: str) -> Query:
    return Query(level=Level.STUDY, keys=keys, limit=PAGE + 1)


def searches(rows: Rows) -> list[Search]:
    """The standard study searches of a worklist or a viewer's study list."""

    def date_range(rng: random.Random) -> Query:
        state = rng.getstate()
        low = _study_date(rng)
        rng.setstate(state)
        return _study(rng, StudyDate=f"{low}-{_study_date(rng, 7)}")

    def deep_page(rng: random.Random) -> Query:
        pk = rng.randrange(1, len(rows.study_series) - PAGE)
        return Query(level=Level.STUDY, limit=PAGE + 1, after=(pk,))

    return [
        Search("PatientName prefix", lambda r: _study(r, PatientName="wang^x*")),
        Search("PatientName ideographic", lambda r: _study(r, PatientName="李*")),
        Search(
            "PatientName fuzzy",
            lambda r: Query(
                level=Level.STUDY,
                keys={"PatientName": "xiaodong w"},
                fuzzy=True,
                limit=PAGE + 1,
            ),
        ),
        Search("PatientID", lambda r: _study(r, PatientID=r.choice(rows.patient_ids))),
        Search("StudyDate range (7 days)", date_range),
        Search(
            "AccessionNumber",
            lambda r: _study(r, AccessionNumber=r.choice(rows.accessions)),
        ),
        Search("ModalitiesInStudy=NM", lambda r: _study(r, ModalitiesInStudy="NM")),
        Search("page of 100, no filter", lambda r: _study(r)),
        Search("page of 100 after a cursor", deep_page),
        Search(
            "page of 100 by StudyDate desc",
            lambda r: Query(
                level=Level.STUDY, order=(OrderKey("StudyDate", True),), limit=PAGE + 1
            ),
        ),
    ]


async def _search_once(archive: Archive, search: Search, rng: random.Random) -> Any:
    return await archive.search(search.make(rng))


async def _time(run: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _report(name: str, times: list[float], rows: int) -> bool:
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    ok = p99 < TARGET_P99_MS
    print(f"  {name:34s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {rows:4d} rows"
          f"{'' if ok else '  OVER TARGET'}")  # fmt: skip
    return ok


async def measure(archive: Archive, rows: Rows, runs: int, seed: int) -> bool:
    """Run every search ``runs`` times (after a warm-up); print p50/p99."""
    rng = random.Random(seed + 1)
    # As the server does once it is up: what exists now is never collected.
    gc.collect()
    gc.freeze()
    ok = True
    print(f"Study searches through Archive.search, page of {PAGE} with counts:")
    for search in searches(rows):
        found = await archive.search(search.make(rng))
        run = functools.partial(_search_once, archive, search, rng)
        await _time(run, 5)
        times = await _time(run, runs)
        ok &= _report(search.name, times, len(found.matches))
    print("Counts (X-Total-Count):")
    for name, keys in (
        ("count PatientName prefix", {"PatientName": "wang*"}),
        ("count StudyDate range (30 days)", {"StudyDate": "20200101-20200131"}),
    ):
        query = Query(level=Level.STUDY, keys=keys)
        total, _ = await archive.count(query)
        times = await _time(functools.partial(archive.count, query), runs)
        ok &= _report(name, times, total)
    return ok


async def main_async(args: argparse.Namespace) -> int:
    """Start a throwaway PostgreSQL, fill it, measure, stop it."""
    shape = Shape(args.instances, args.per_series, args.max_series, 2.0)
    with tempfile.TemporaryDirectory(prefix="qido-bench-") as folder:
        embedded = EmbeddedPostgres(Path(folder) / "pg")
        url = await asyncio.to_thread(embedded.start)
        index = await Index.connect(url, 4)
        try:
            async with index.acquire() as conn:
                await apply_migrations(conn, migrations_dir())
            rows = Rows(shape, args.seed)
            print(f"Filling {shape.instances} instances, {shape.series} series, "
                  f"{len(rows.study_series)} studies:")  # fmt: skip
            started = time.perf_counter()
            await fill(index, rows)
            print(f"  filled in {time.perf_counter() - started:.1f} s")
            keys = FileKeyProvider("bench", {1: secrets.token_bytes(32)})
            store = MemoryStore()
            ingestor = Ingestor(
                index, store, keys, chunk_bytes=65536,
                duplicate_policy=DuplicatePolicy.REJECT,
            )  # fmt: skip
            archive = Archive(index, store, keys, ingestor)
            ok = await measure(archive, rows, args.runs, args.seed)
        finally:
            await index.close()
            await asyncio.to_thread(embedded.stop)
    print("all p99 under target" if ok else f"some p99 over {TARGET_P99_MS} ms")
    return 0 if ok else 1


def main() -> int:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--per-series", type=int, default=8)
    parser.add_argument("--max-series", type=int, default=4)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1393)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())

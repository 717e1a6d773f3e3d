"""The index rows of one parsed instance: typed columns and DICOM JSON."""

from __future__ import annotations

import json
from typing import Any

from pydicom.datadict import tag_for_keyword

from archive.attributes import SERIES_KEYWORDS, STUDY_KEYWORDS
from archive.dicom_json import dataset_to_json
from archive.index import InstanceRow, SeriesRow, StudyRow
from archive.matching import normalize_date, normalize_time
from archive.parse import ParsedInstance
from archive.person_name import group_key, name_words


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


_STUDY_TAGS = frozenset(_tag(keyword) for keyword in STUDY_KEYWORDS)
_SERIES_TAGS = frozenset(_tag(keyword) for keyword in SERIES_KEYWORDS)
_REQUEST_ATTRIBUTES = _tag("RequestAttributesSequence")
_SCHEDULED_STEP_ID = _tag("ScheduledProcedureStepID")
_REQUESTED_PROCEDURE_ID = _tag("RequestedProcedureID")


def bulk_uri_base(study: str, series: str, instance: str) -> str:
    """The relative URI of an instance; the DICOMweb layer adds its own root."""
    return f"studies/{study}/series/{series}/instances/{instance}"


def _first(metadata: dict[str, Any], keyword: str) -> Any:
    values = metadata.get(_tag(keyword), {}).get("Value")
    return values[0] if values else None


def _text(metadata: dict[str, Any], keyword: str) -> str | None:
    value = _first(metadata, keyword)
    return None if value is None else str(value)


def _integer(metadata: dict[str, Any], keyword: str) -> int | None:
    value = _first(metadata, keyword)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**31) <= number < 2**31 else None


def person_name_columns(full: str | None, column: str) -> dict[str, Any]:
    """The index columns of one PN value given as its groups joined by '='."""
    groups = (full or "").split("=") + ["", ""]
    return {
        column: full or None,
        f"{column}_alphabetic_ci": group_key(groups[0]),
        f"{column}_ideographic_ci": group_key(groups[1]),
        f"{column}_phonetic_ci": group_key(groups[2]),
        f"{column}_words": name_words(full),
    }


def _person_name(metadata: dict[str, Any], keyword: str, column: str) -> dict[str, Any]:
    value = _first(metadata, keyword)
    groups = value if isinstance(value, dict) else {}
    alphabetic = groups.get("Alphabetic")
    ideographic = groups.get("Ideographic")
    phonetic = groups.get("Phonetic")
    full = "=".join([alphabetic or "", ideographic or "", phonetic or ""]).rstrip("=")
    return person_name_columns(full, column)


def _date(metadata: dict[str, Any], keyword: str) -> str | None:
    value = _text(metadata, keyword)
    return normalize_date(value) if value else None


def _time(metadata: dict[str, Any], keyword: str) -> str | None:
    value = _text(metadata, keyword)
    return normalize_time(value) if value else None


def _subset(metadata: dict[str, Any], tags: frozenset[str]) -> str:
    return json.dumps({tag: value for tag, value in metadata.items() if tag in tags})


def _request_ids(metadata: dict[str, Any], item_tag: str) -> list[str]:
    items = metadata.get(_REQUEST_ATTRIBUTES, {}).get("Value") or []
    found: list[str] = []
    for item in items:
        for value in item.get(item_tag, {}).get("Value") or []:
            found.append(str(value))
    return found


def index_rows(
    parsed: ParsedInstance,
    *,
    object_key: str,
    object_size: int,
    sha256: bytes,
) -> tuple[StudyRow, SeriesRow, InstanceRow]:
    """Build the study, series and instance rows for one parsed instance."""
    base = bulk_uri_base(
        parsed.study_instance_uid, parsed.series_instance_uid, parsed.sop_instance_uid
    )
    metadata = dataset_to_json(
        parsed.dataset,
        bulk_uri=lambda path: f"{base}/bulk/{path}",
        bulk_paths={element.path for element in parsed.bulk},
    )
    study = StudyRow(
        values={
            "study_instance_uid": parsed.study_instance_uid,
            "patient_id": _text(metadata, "PatientID") or "",
            "issuer_of_patient_id": _text(metadata, "IssuerOfPatientID") or "",
            **_person_name(metadata, "PatientName", "patient_name"),
            "patient_birth_date": _date(metadata, "PatientBirthDate"),
            "patient_sex": _text(metadata, "PatientSex"),
            "study_date": _date(metadata, "StudyDate"),
            "study_time": _time(metadata, "StudyTime"),
            "accession_number": _text(metadata, "AccessionNumber"),
            "study_id": _text(metadata, "StudyID"),
            "study_description": _text(metadata, "StudyDescription"),
            **_person_name(
                metadata, "ReferringPhysicianName", "referring_physician_name"
            ),
        },
        attributes=_subset(metadata, _STUDY_TAGS),
    )
    series = SeriesRow(
        values={
            "series_instance_uid": parsed.series_instance_uid,
            "modality": _text(metadata, "Modality"),
            "series_number": _integer(metadata, "SeriesNumber"),
            "series_description": _text(metadata, "SeriesDescription"),
            "performed_procedure_step_start_date": _date(
                metadata, "PerformedProcedureStepStartDate"
            ),
            "performed_procedure_step_start_time": _time(
                metadata, "PerformedProcedureStepStartTime"
            ),
            "scheduled_procedure_step_ids": _request_ids(metadata, _SCHEDULED_STEP_ID),
            "requested_procedure_ids": _request_ids(metadata, _REQUESTED_PROCEDURE_ID),
        },
        attributes=_subset(metadata, _SERIES_TAGS),
    )
    instance = InstanceRow(
        values={
            "sop_instance_uid": parsed.sop_instance_uid,
            "sop_class_uid": parsed.sop_class_uid,
            "instance_number": _integer(metadata, "InstanceNumber"),
            "number_of_frames": _integer(metadata, "NumberOfFrames"),
            "rows": _integer(metadata, "Rows"),
            "columns": _integer(metadata, "Columns"),
            "bits_allocated": _integer(metadata, "BitsAllocated"),
            "samples_per_pixel": _integer(metadata, "SamplesPerPixel"),
            "transfer_syntax_uid": parsed.transfer_syntax_uid,
            "object_key": object_key,
            "object_size": object_size,
            "sha256": sha256,
            "offsets_valid": parsed.offsets_valid,
            "bulk": json.dumps(
                [[b.path, b.vr, b.offset, b.length] for b in parsed.bulk]
            ),
            "frames": None if parsed.frames is None else json.dumps(parsed.frames),
        },
        metadata=json.dumps(metadata),
    )
    return study, series, instance

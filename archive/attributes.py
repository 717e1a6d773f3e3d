"""Which attributes the index keeps at which level, and in which column."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Level(str, Enum):
    """Query/retrieve levels (PS3.4 C.3)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True)
class Column:
    """A matching key kept in a typed index column."""

    keyword: str
    vr: str
    level: Level
    column: str


def _columns(level: Level, table: str, *specs: tuple[str, str, str]) -> list[Column]:
    return [Column(kw, vr, level, f"{table}.{col}") for kw, vr, col in specs]


# PS3.18 Table 10.6.1-5 and PS3.4 C.6.1.1 / C.6.2.1 keys with their columns.
INDEXED: dict[str, Column] = {
    column.keyword: column
    for column in (
        _columns(
            Level.STUDY,
            "study",
            ("PatientName", "PN", "patient_name"),
            ("PatientID", "LO", "patient_id"),
            ("IssuerOfPatientID", "LO", "issuer_of_patient_id"),
            ("PatientBirthDate", "DA", "patient_birth_date"),
            ("PatientSex", "CS", "patient_sex"),
            ("StudyInstanceUID", "UI", "study_instance_uid"),
            ("StudyDate", "DA", "study_date"),
            ("StudyTime", "TM", "study_time"),
            ("AccessionNumber", "SH", "accession_number"),
            ("StudyID", "SH", "study_id"),
            ("StudyDescription", "LO", "study_description"),
            ("ReferringPhysicianName", "PN", "referring_physician_name"),
        )
        + _columns(
            Level.SERIES,
            "series",
            ("SeriesInstanceUID", "UI", "series_instance_uid"),
            ("Modality", "CS", "modality"),
            ("SeriesNumber", "IS", "series_number"),
            ("SeriesDescription", "LO", "series_description"),
            (
                "PerformedProcedureStepStartDate",
                "DA",
                "performed_procedure_step_start_date",
            ),
            (
                "PerformedProcedureStepStartTime",
                "TM",
                "performed_procedure_step_start_time",
            ),
        )
        + _columns(
            Level.IMAGE,
            "instance",
            ("SOPInstanceUID", "UI", "sop_instance_uid"),
            ("SOPClassUID", "UI", "sop_class_uid"),
            ("InstanceNumber", "IS", "instance_number"),
            ("NumberOfFrames", "IS", "number_of_frames"),
            ("Rows", "US", "rows"),
            ("Columns", "US", "columns"),
            ("BitsAllocated", "US", "bits_allocated"),
        )
    )
}

# Keys computed from the index rather than stored (PS3.4 C.3.4).
COMPUTED: dict[str, tuple[str, Level]] = {
    "ModalitiesInStudy": ("CS", Level.STUDY),
    "SOPClassesInStudy": ("UI", Level.STUDY),
    "NumberOfStudyRelatedSeries": ("IS", Level.STUDY),
    "NumberOfStudyRelatedInstances": ("IS", Level.STUDY),
    "NumberOfSeriesRelatedInstances": ("IS", Level.SERIES),
    "NumberOfPatientRelatedStudies": ("IS", Level.PATIENT),
    "NumberOfPatientRelatedSeries": ("IS", Level.PATIENT),
    "NumberOfPatientRelatedInstances": ("IS", Level.PATIENT),
    "RetrieveURL": ("UR", Level.STUDY),
    "InstanceAvailability": ("CS", Level.STUDY),
}

# Sequence matching keys kept as arrays on the series row (PS3.18 10.6.1.2).
REQUEST_ATTRIBUTES_SEQUENCE = "RequestAttributesSequence"
SEQUENCE_ITEM_COLUMNS: dict[str, str] = {
    "ScheduledProcedureStepID": "series.scheduled_procedure_step_ids",
    "RequestedProcedureID": "series.requested_procedure_ids",
}

# Attributes copied into each level's JSON. Patient attributes go with the study.
PATIENT_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "TypeOfPatientID",
        "OtherPatientIDsSequence",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "PatientComments",
        "EthnicGroup",
        "PatientSpeciesDescription",
        "PatientBreedDescription",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
    }
)
STUDY_KEYWORDS = PATIENT_KEYWORDS | frozenset(
    {
        "SpecificCharacterSet",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "IssuerOfAccessionNumberSequence",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "ReferringPhysicianIdentificationSequence",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "ProcedureCodeSequence",
        "AdmittingDiagnosesDescription",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "Occupation",
        "AdditionalPatientHistory",
        "TimezoneOffsetFromUTC",
        "InstitutionName",
    }
)
SERIES_KEYWORDS = frozenset(
    {
        "SpecificCharacterSet",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "Laterality",
        "BodyPartExamined",
        "ProtocolName",
        "OperatorsName",
        "PerformingPhysicianName",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
        "RequestAttributesSequence",
        "Manufacturer",
        "ManufacturerModelName",
        "StationName",
        "InstitutionalDepartmentName",
        "FrameOfReferenceUID",
        "TimezoneOffsetFromUTC",
    }
)

# PS3.18 Table 10.6.3-3..5: attributes every QIDO response carries by default.
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "SpecificCharacterSet",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    Level.STUDY: (
        "SpecificCharacterSet",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "TimezoneOffsetFromUTC",
        "RetrieveURL",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "SpecificCharacterSet",
        "Modality",
        "TimezoneOffsetFromUTC",
        "SeriesDescription",
        "RetrieveURL",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "RequestAttributesSequence",
    ),
    Level.IMAGE: (
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "TimezoneOffsetFromUTC",
        "RetrieveURL",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}

LEVEL_ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)


def level_of(keyword: str) -> Level | None:
    """The level a matching key belongs to, or None when the index has no column."""
    if keyword in INDEXED:
        return INDEXED[keyword].level
    if keyword in COMPUTED:
        return COMPUTED[keyword][1]
    if keyword in SEQUENCE_ITEM_COLUMNS or keyword == REQUEST_ATTRIBUTES_SEQUENCE:
        return Level.SERIES
    return None

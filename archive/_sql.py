"""Compile a ``Query`` into one SQL statement for the index (PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from archive.attributes import (
    INDEXED,
    REQUEST_ATTRIBUTES_SEQUENCE,
    SEQUENCE_ITEM_COLUMNS,
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    Column,
    Level,
    level_of,
)
from archive.errors import InvalidQuery
from archive.matching import (
    AnyOf,
    Matcher,
    Range,
    Single,
    UidList,
    Universal,
    Wildcard,
    build_matcher,
)
from archive.query import Query

_PN_GROUPS = ("alphabetic_ci", "ideographic_ci", "phonetic_ci")
_LEVEL_TABLE = {
    Level.PATIENT: "study",
    Level.STUDY: "study",
    Level.SERIES: "series",
    Level.IMAGE: "instance",
}
_LEVEL_DEPTH = {Level.PATIENT: 0, Level.STUDY: 0, Level.SERIES: 1, Level.IMAGE: 2}
_INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL"})
_JSON_TEXT_VRS = frozenset({"AE", "CS", "LO", "SH", "UI", "DA", "TM", "DT", "AS"})


@dataclass
class Params:
    """Positional parameters of one statement."""

    values: list[Any] = field(default_factory=list)

    def add(self, value: Any) -> str:
        """Append a value and return its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass(frozen=True)
class Compiled:
    """A statement, its parameters, and the keys the index could not match."""

    sql: str
    params: list[Any]
    unsupported: tuple[str, ...]


def json_tag(keyword: str) -> str:
    """The DICOM JSON key (8 hex digits) of a keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise InvalidQuery(f"{keyword!r} is not a DICOM keyword")
    return f"{tag:08X}"


def _scalar_condition(column: str, matcher: Matcher, vr: str, params: Params) -> str:
    if isinstance(matcher, Universal):
        return "TRUE"
    if isinstance(matcher, UidList):
        return f"{column} = ANY({params.add(list(matcher.uids))}::text[])"
    if isinstance(matcher, AnyOf):
        parts = [_scalar_condition(column, m, vr, params) for m in matcher.matchers]
        return "(" + " OR ".join(parts) + ")"
    if isinstance(matcher, Wildcard):
        return f"{column} LIKE {params.add(matcher.pattern)}"
    if isinstance(matcher, Range):
        return _range_condition(column, matcher, params)
    if vr in _INTEGER_VRS:
        return f"{column} = {params.add(int(matcher.value))}::integer"
    return f"{column} = {params.add(matcher.value)}"


def _range_condition(column: str, matcher: Range, params: Params) -> str:
    low = f"{column} >= {params.add(matcher.low)}" if matcher.low else None
    high = f"{column} <= {params.add(matcher.high)}" if matcher.high else None
    if matcher.crosses_midnight:
        return f"({low} OR {high})"
    return "(" + " AND ".join(part for part in (low, high) if part) + ")"


def _person_name_condition(column: str, matcher: Matcher, params: Params) -> str:
    if isinstance(matcher, Universal):
        return "TRUE"
    if isinstance(matcher, AnyOf):
        parts = [_person_name_condition(column, m, params) for m in matcher.matchers]
        return "(" + " OR ".join(parts) + ")"
    assert isinstance(matcher, (Single, Wildcard)), matcher
    text = matcher.value if isinstance(matcher, Single) else matcher.pattern
    operator = "=" if isinstance(matcher, Single) else "LIKE"
    groups = text.split("=")
    if len(groups) == 1:
        # No component group given: the value may match any of the three.
        placeholder = params.add(text)
        alternatives = [f"{column}_{g} {operator} {placeholder}" for g in _PN_GROUPS]
        return "(" + " OR ".join(alternatives) + ")"
    conditions = [
        f"{column}_{suffix} {operator} {params.add(group)}"
        for suffix, group in zip(_PN_GROUPS, groups)
        if group not in ("", "%")
    ]
    return "(" + " AND ".join(conditions or ["TRUE"]) + ")"


def _sequence_condition(keyword: str, value: str, params: Params) -> str:
    _, _, item_keyword = keyword.partition(".")
    column = SEQUENCE_ITEM_COLUMNS.get(item_keyword)
    if column is None:
        raise InvalidQuery(
            f"Sequence matching on {keyword!r} is not supported; the supported "
            f"item keys are {sorted(SEQUENCE_ITEM_COLUMNS)}"
        )
    matcher = build_matcher(item_keyword, "SH", value)
    if isinstance(matcher, Universal):
        return "TRUE"
    inner = _scalar_condition("item", matcher, "SH", params)
    return f"EXISTS (SELECT 1 FROM unnest({column}) AS item WHERE {inner})"


def _json_condition(
    source: str, keyword: str, vr: str, value: str, params: Params
) -> str:
    matcher = build_matcher(keyword, vr, value)
    if isinstance(matcher, Universal):
        return "TRUE"
    elements = f"json_array_elements_text({source}->'{json_tag(keyword)}'->'Value')"
    inner = _scalar_condition("item", matcher, "LO", params)
    return f"EXISTS (SELECT 1 FROM {elements} AS item WHERE {inner})"


def _computed_condition(keyword: str, value: str, params: Params) -> str | None:
    if keyword != "ModalitiesInStudy":
        return None
    matcher = build_matcher(keyword, "CS", value)
    if isinstance(matcher, Universal):
        return "TRUE"
    inner = _scalar_condition("m.modality", matcher, "CS", params)
    return (
        "EXISTS (SELECT 1 FROM series AS m " f"WHERE m.study_pk = study.pk AND {inner})"
    )


def _column_condition(column: Column, value: str, params: Params) -> str:
    matcher = build_matcher(column.keyword, column.vr, value)
    if column.vr == "PN":
        return _person_name_condition(column.column, matcher, params)
    return _scalar_condition(column.column, matcher, column.vr, params)


def _lower_level_exists(query_level: Level, key_level: Level, condition: str) -> str:
    """Wrap a condition on a lower level's table in EXISTS (study -> series...)."""
    if query_level in (Level.STUDY, Level.PATIENT) and key_level == Level.SERIES:
        return (
            "EXISTS (SELECT 1 FROM series WHERE series.study_pk = study.pk "
            f"AND {condition})"
        )
    if key_level == Level.IMAGE and query_level != Level.IMAGE:
        link = "series.pk" if query_level == Level.SERIES else None
        if link is None:
            return (
                "EXISTS (SELECT 1 FROM series JOIN instance ON instance.series_pk "
                f"= series.pk WHERE series.study_pk = study.pk AND {condition})"
            )
        return (
            "EXISTS (SELECT 1 FROM instance WHERE instance.series_pk = series.pk "
            f"AND {condition})"
        )
    return condition


def _json_source(keyword: str, level: Level) -> tuple[str, Level] | None:
    if keyword in STUDY_KEYWORDS:
        return "study.attributes", Level.STUDY
    if keyword in SERIES_KEYWORDS:
        return "series.attributes", Level.SERIES
    if level == Level.IMAGE:
        return "instance.metadata", Level.IMAGE
    return None


def where_clause(query: Query, params: Params) -> tuple[str, tuple[str, ...]]:
    """Build the WHERE conditions of a query; also return unsupported keys."""
    conditions: list[str] = []
    unsupported: list[str] = []
    if query.study_instance_uid is not None:
        conditions.append(
            f"study.study_instance_uid = {params.add(query.study_instance_uid)}"
        )
    if query.series_instance_uid is not None:
        conditions.append(
            f"series.series_instance_uid = {params.add(query.series_instance_uid)}"
        )
    for keyword, value in query.keys.items():
        condition, key_level = _key_condition(query.level, keyword, value, params)
        if condition is None:
            unsupported.append(keyword)
        elif condition != "TRUE":
            assert key_level is not None
            conditions.append(_lower_level_exists(query.level, key_level, condition))
    return " AND ".join(conditions) or "TRUE", tuple(unsupported)


def _key_condition(
    level: Level, keyword: str, value: str, params: Params
) -> tuple[str | None, Level | None]:
    if "." in keyword:
        head = keyword.partition(".")[0]
        if head != REQUEST_ATTRIBUTES_SEQUENCE:
            return None, None
        return _sequence_condition(keyword, value, params), Level.SERIES
    if keyword in INDEXED:
        column = INDEXED[keyword]
        return _column_condition(column, value, params), column.level
    computed = _computed_condition(keyword, value, params)
    if computed is not None:
        return computed, Level.STUDY
    if level_of(keyword) is not None:
        # Other computed keys (counts, RetrieveURL) are return keys only.
        return ("TRUE" if value == "" else None), level
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise InvalidQuery(f"{keyword!r} is not a DICOM keyword or tag")
    vr = dictionary_VR(tag)
    source = _json_source(keyword, level)
    if source is None or vr not in _JSON_TEXT_VRS:
        return ("TRUE" if value == "" else None), level
    return _json_condition(source[0], keyword, vr, value, params), source[1]


def _from_clause(level: Level) -> str:
    if level in (Level.STUDY, Level.PATIENT):
        return "study"
    if level == Level.SERIES:
        return "series JOIN study ON study.pk = series.study_pk"
    return (
        "instance JOIN series ON series.pk = instance.series_pk "
        "JOIN study ON study.pk = series.study_pk"
    )


def compile_search(query: Query) -> Compiled:
    """Compile a search: one row per match, ordered by arrival, paged."""
    params = Params()
    where, unsupported = where_clause(query, params)
    table = _LEVEL_TABLE[query.level]
    columns = [
        "study.pk AS study_pk",
        "study.study_instance_uid",
        "study.attributes AS study_attributes",
    ]
    if query.level in (Level.SERIES, Level.IMAGE):
        columns += [
            "series.pk AS series_pk",
            "series.series_instance_uid",
            "series.attributes AS series_attributes",
        ]
    if query.level == Level.IMAGE:
        columns += [
            "instance.pk AS instance_pk",
            "instance.sop_instance_uid",
            "instance.metadata AS instance_metadata",
        ]
    order = f"{table}.pk"
    if query.level == Level.PATIENT:
        sql = _patient_sql(where)
    else:
        sql = f"SELECT {', '.join(columns)} FROM {_from_clause(query.level)} WHERE {where} ORDER BY {order}"
    if query.limit is not None:
        sql += f" LIMIT {params.add(query.limit)}"
    if query.offset:
        sql += f" OFFSET {params.add(query.offset)}"
    return Compiled(sql, params.values, unsupported)


def _patient_sql(where: str) -> str:
    return (
        "SELECT DISTINCT ON (study.patient_id, study.issuer_of_patient_id) "
        "study.pk AS study_pk, study.patient_id, study.issuer_of_patient_id, "
        "study.attributes AS study_attributes "
        f"FROM study WHERE {where} "
        "ORDER BY study.patient_id, study.issuer_of_patient_id, study.pk DESC"
    )

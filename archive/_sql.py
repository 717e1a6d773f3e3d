"""Compile a ``Query`` into one SQL statement for the index (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
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
from archive.person_name import fuzzy_tsquery, query_key
from archive.query import CursorValue, Query

_PN_GROUPS = ("alphabetic", "ideographic", "phonetic")
_LEVEL_TABLE = {
    Level.PATIENT: "study",
    Level.STUDY: "study",
    Level.SERIES: "series",
    Level.IMAGE: "instance",
}
_LEVEL_DEPTH = {Level.PATIENT: 0, Level.STUDY: 0, Level.SERIES: 1, Level.IMAGE: 2}
_INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL"})
_JSON_TEXT_VRS = frozenset({"AE", "CS", "LO", "SH", "UI", "DA", "TM", "DT", "AS"})
_LEVEL_RANK = {Level.PATIENT: 0, Level.STUDY: 0, Level.SERIES: 1, Level.IMAGE: 2}
# Sorts NULL integers first; a real value equal to it only ties, and pk breaks ties.
_NULL_INTEGER = -(2**31)
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1
# A stored TM value (PS3.5 6.2) as HHMMSS.FFFFFF, the form TM ranges compare to.
_JSON_TIME = (
    "CASE WHEN replace(btrim(item), ':', '') "
    "~ '^[0-9]{2}([0-9]{2}([0-9]{2}([.][0-9]{1,6})?)?)?$' "
    "THEN rpad(split_part(replace(btrim(item), ':', ''), '.', 1), 6, '0') || '.' "
    "|| rpad(split_part(replace(btrim(item), ':', ''), '.', 2), 6, '0') END"
)
# A stored DT value (PS3.5 6.2) split into YYYY, MM, DD, HH, MM, SS, F, &, ZZ, XX.
_DT_PATTERN = (
    "^([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})"
    "(?:([0-9]{2})(?:[.]([0-9]{1,6}))?)?)?)?)?)?(?:([+-])([0-9]{2})([0-9]{2}))?$"
)
# Its first instant in UTC, as archive.matching.datetime_bounds reads a value:
# shifted by its &ZZXX, else as written; a leap second is the end of second 59.
# A value that is no real date-time is NULL (matched by no DT key). Nested CASE,
# not AND, orders the checks before the casts: no stored value can raise.
_DT_MOMENT = (
    "CASE WHEN p[1] <> '0000' AND COALESCE(p[2], '01') BETWEEN '01' AND '12' "
    "AND COALESCE(p[3], '01') >= '01' AND COALESCE(p[4], '00') <= '23' "
    "AND COALESCE(p[5], '00') <= '59' AND COALESCE(p[6], '00') <= '60' "
    "AND COALESCE(p[10], '00') <= '59' "
    "THEN CASE WHEN COALESCE(p[3], '01')::int <= extract(day FROM "
    "make_date(p[1]::int, COALESCE(p[2], '01')::int, 1) "
    "+ interval '1 month - 1 day') "
    "THEN make_timestamp(p[1]::int, COALESCE(p[2], '01')::int, "
    "COALESCE(p[3], '01')::int, COALESCE(p[4], '0')::int, "
    "COALESCE(p[5], '0')::int, LEAST(COALESCE(p[6], '0')::int, 59)) "
    "- make_interval(hours => COALESCE((p[8] || p[9])::int, 0), "
    "mins => COALESCE((p[8] || p[10])::int, 0)) "
    "+ CASE WHEN p[6] = '60' THEN 999999 ELSE rpad(COALESCE(p[7], ''), 6, '0')::int "
    "END * interval '1 microsecond' END END"
)


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
    cursor_columns: tuple[str, ...] = ()


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


def _moment_condition(expression: str, matcher: Matcher, params: Params) -> str:
    """DT matching of a timestamp expression against UTC bounds (see Range)."""
    if isinstance(matcher, AnyOf):
        parts = [_moment_condition(expression, m, params) for m in matcher.matchers]
        return "(" + " OR ".join(parts) + ")"
    assert isinstance(matcher, Range), matcher
    bounds = [
        f"{expression} {operator} {params.add(_moment(text))}::timestamp"
        for operator, text in ((">=", matcher.low), ("<=", matcher.high))
        if text is not None
    ]
    return "(" + " AND ".join(bounds) + ")"


def _moment(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S.%f")


def _column_group(column: str) -> Callable[[str], str]:
    return lambda group: f"{column}_{group}_ci"


def _json_group(alias: str) -> Callable[[str], str]:
    # Stored DICOM JSON keeps trailing delimiters; the columns do not (PS3.5 6.2.1).
    return lambda group: f"rtrim(lower({alias}->>'{group.capitalize()}'), '^ ')"


def _person_name_condition(
    group_of: Callable[[str], str], matcher: Matcher, params: Params
) -> str:
    """Match component groups: one value may be any group, '=' names each."""
    if isinstance(matcher, Universal):
        return "TRUE"
    if isinstance(matcher, AnyOf):
        parts = [_person_name_condition(group_of, m, params) for m in matcher.matchers]
        return "(" + " OR ".join(parts) + ")"
    assert isinstance(matcher, (Single, Wildcard)), matcher
    text = query_key(matcher.value) if isinstance(matcher, Single) else matcher.pattern
    operator = "=" if isinstance(matcher, Single) else "LIKE"
    groups = text.split("=")
    if len(groups) == 1:
        # No component group given: the value may match any of the three.
        placeholder = params.add(text)
        alternatives = [f"{group_of(g)} {operator} {placeholder}" for g in _PN_GROUPS]
        return "(" + " OR ".join(alternatives) + ")"
    conditions = [
        f"{group_of(name)} {operator} {params.add(group)}"
        for name, group in zip(_PN_GROUPS, groups)
        if group not in ("", "%")
    ]
    return "(" + " AND ".join(conditions or ["TRUE"]) + ")"


def _fuzzy_condition(column: str, value: str, params: Params) -> str:
    """Word-prefix matching of folded names (see ``archive.person_name``)."""
    tsquery = fuzzy_tsquery(value)
    if tsquery is None:
        return "TRUE"
    return f"array_to_tsvector({column}_words) @@ {params.add(tsquery)}::tsquery"


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


def _json_values_condition(
    values: str, keyword: str, vr: str, value: str, params: Params
) -> str:
    """Match the elements of a DICOM JSON "Value" array (text or PN)."""
    matcher = build_matcher(keyword, vr, value)
    if isinstance(matcher, Universal):
        return "TRUE"
    if vr == "PN":
        inner = _person_name_condition(_json_group("pn"), matcher, params)
        return (
            f"EXISTS (SELECT 1 FROM json_array_elements({values}) AS pn WHERE {inner})"
        )
    if vr == "DT":
        inner = _moment_condition("moment", matcher, params)
        return (
            f"EXISTS (SELECT 1 FROM json_array_elements_text({values}) AS item "
            f"CROSS JOIN LATERAL regexp_match(btrim(item), '{_DT_PATTERN}') AS dt(p) "
            f"CROSS JOIN LATERAL (SELECT {_DT_MOMENT} AS moment) AS m WHERE {inner})"
        )
    # Stored TM text keeps its own precision; ranges compare padded HHMMSS.FFFFFF.
    item = _JSON_TIME if vr == "TM" else "item"
    inner = _scalar_condition(item, matcher, "LO", params)
    return (
        f"EXISTS (SELECT 1 FROM json_array_elements_text({values}) AS item "
        f"WHERE {inner})"
    )


def _json_condition(
    source: str, keyword: str, vr: str, value: str, params: Params
) -> str:
    values = f"{source}->'{json_tag(keyword)}'->'Value'"
    return _json_values_condition(values, keyword, vr, value, params)


def _json_sequence_condition(
    source: str, keyword: str, value: str, params: Params
) -> str | None:
    """Sequence matching (PS3.4 C.2.2.2.6) on an item key in stored JSON.

    ``keyword`` is a path such as ``A.B.Leaf``: each step but the last names a
    sequence, and an entity matches when any item at every level leads to a
    matching ``Leaf`` value.
    """
    *sequences, leaf = keyword.split(".")
    for name in sequences:
        tag = tag_for_keyword(name)
        if tag is None or dictionary_VR(tag) != "SQ":
            raise InvalidQuery(
                f"{keyword!r} is not a path of sequence keywords ending in an "
                f"item keyword: {name!r} is not a sequence"
            )
    leaf_tag = tag_for_keyword(leaf)
    if leaf_tag is None:
        raise InvalidQuery(f"{leaf!r} in {keyword!r} is not a DICOM keyword")
    vr = dictionary_VR(leaf_tag)
    if vr not in _JSON_TEXT_VRS and vr != "PN":
        return None
    depth = len(sequences) - 1
    values = f"seq_item{depth}->'{json_tag(leaf)}'->'Value'"
    condition = _json_values_condition(values, leaf, vr, value, params)
    if condition == "TRUE":
        return "TRUE"
    for level in range(depth, -1, -1):
        parent = source if level == 0 else f"seq_item{level - 1}"
        items = (
            f"json_array_elements({parent}->'{json_tag(sequences[level])}'->'Value')"
        )
        condition = (
            f"EXISTS (SELECT 1 FROM {items} AS seq_item{level} WHERE {condition})"
        )
    return condition


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


def _column_condition(column: Column, value: str, params: Params, fuzzy: bool) -> str:
    matcher = build_matcher(column.keyword, column.vr, value)
    if column.vr == "PN" and fuzzy and not isinstance(matcher, Universal):
        return _fuzzy_condition(column.column, value, params)
    if column.vr == "PN":
        return _person_name_condition(_column_group(column.column), matcher, params)
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
        condition, key_level = _key_condition(query, keyword, value, params)
        if condition is None:
            unsupported.append(keyword)
        elif condition != "TRUE":
            assert key_level is not None
            conditions.append(_lower_level_exists(query.level, key_level, condition))
    return " AND ".join(conditions) or "TRUE", tuple(unsupported)


def _key_condition(
    query: Query, keyword: str, value: str, params: Params
) -> tuple[str | None, Level | None]:
    level = query.level
    if "." in keyword:
        return _sequence_key_condition(level, keyword, value, params)
    if keyword in INDEXED:
        column = INDEXED[keyword]
        return _column_condition(column, value, params, query.fuzzy), column.level
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
    if source is None or (vr not in _JSON_TEXT_VRS and vr != "PN"):
        return ("TRUE" if value == "" else None), level
    return _json_condition(source[0], keyword, vr, value, params), source[1]


def _sequence_key_condition(
    level: Level, keyword: str, value: str, params: Params
) -> tuple[str | None, Level | None]:
    head, _, item_keyword = keyword.partition(".")
    if head == REQUEST_ATTRIBUTES_SEQUENCE and item_keyword in SEQUENCE_ITEM_COLUMNS:
        return _sequence_condition(keyword, value, params), Level.SERIES
    source = _json_source(head, level)
    if source is None:
        return ("TRUE" if value == "" else None), level
    condition = _json_sequence_condition(source[0], keyword, value, params)
    return condition, (source[1] if condition is not None else None)


def _from_clause(level: Level) -> str:
    if level in (Level.STUDY, Level.PATIENT):
        return "study"
    if level == Level.SERIES:
        return "series JOIN study ON study.pk = series.study_pk"
    return (
        "instance JOIN series ON series.pk = instance.series_pk "
        "JOIN study ON study.pk = series.study_pk"
    )


def _order_expression(keyword: str, level: Level) -> tuple[str, str]:
    """The SQL sort expression of an orderby key and its cursor type."""
    column = INDEXED.get(keyword)
    if column is None or _LEVEL_RANK[column.level] > _LEVEL_RANK[level]:
        supported = sorted(
            k for k, c in INDEXED.items() if _LEVEL_RANK[c.level] <= _LEVEL_RANK[level]
        )
        raise InvalidQuery(
            f"Cannot order {level.value} matches by {keyword!r}; the supported "
            f"keys are {', '.join(supported)}"
        )
    if column.vr == "PN":
        groups = ", ".join(_column_group(column.column)(g) for g in _PN_GROUPS)
        return f"COALESCE({groups}, '')", "text"
    if column.vr in _INTEGER_VRS:
        return f"COALESCE({column.column}, {_NULL_INTEGER})", "bigint"
    return f"COALESCE({column.column}, '')", "text"


def _keyset_condition(
    keys: list[tuple[str, str, bool]], after: tuple[CursorValue, ...], params: Params
) -> str:
    """Rows strictly after the cursor in the order of ``keys`` (expr, type, desc)."""
    if len(after) != len(keys):
        raise InvalidQuery(
            f"The paging cursor holds {len(after)} values where this query's "
            f"order needs {len(keys)}; ask for the first page again"
        )
    placeholders: list[str] = []
    for (_, kind, _), value in zip(keys, after):
        _check_cursor_value(value, kind)
        placeholders.append(f"{params.add(value)}::{kind}")
    alternatives: list[str] = []
    for index, (expression, _, descending) in enumerate(keys):
        ties = [f"{keys[j][0]} = {placeholders[j]}" for j in range(index)]
        operator = "<" if descending else ">"
        step = f"{expression} {operator} {placeholders[index]}"
        alternatives.append("(" + " AND ".join([*ties, step]) + ")")
    return "(" + " OR ".join(alternatives) + ")"


def _check_cursor_value(value: CursorValue, kind: str) -> None:
    """Refuse a cursor value its sort column could not hold (a forged cursor)."""
    expected = int if kind == "bigint" else str
    if not isinstance(value, expected) or isinstance(value, bool):
        problem = f"a {kind} value"
    elif isinstance(value, int) and not _BIGINT_MIN <= value <= _BIGINT_MAX:
        problem = f"a bigint value ({_BIGINT_MIN}..{_BIGINT_MAX})"
    elif isinstance(value, str) and "\x00" in value:
        problem = "text without NUL characters"
    elif isinstance(value, str) and not value.isascii() and _has_surrogate(value):
        problem = "text that is valid Unicode"
    else:
        return
    raise InvalidQuery(
        f"The paging cursor holds {value!r} where this query's order needs "
        f"{problem}; ask for the first page again"
    )


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _columns(level: Level, metadata: str = "instance.metadata") -> list[str]:
    columns = [
        "study.pk AS study_pk",
        "study.study_instance_uid",
        "study.attributes AS study_attributes",
    ]
    if level in (Level.SERIES, Level.IMAGE):
        columns += [
            "series.pk AS series_pk",
            "series.series_instance_uid",
            "series.attributes AS series_attributes",
        ]
    if level == Level.IMAGE:
        columns += [
            "instance.pk AS instance_pk",
            "instance.sop_instance_uid",
            f"{metadata} AS instance_metadata",
        ]
    return columns


def _order_keys(query: Query) -> list[tuple[str, str, bool]]:
    keys = [
        (*_order_expression(key.keyword, query.level), key.descending)
        for key in query.order
    ]
    # Ties go the way of the last key, so one index serves both directions.
    descending = bool(query.order) and query.order[-1].descending
    return [*keys, (f"{_LEVEL_TABLE[query.level]}.pk", "bigint", descending)]


def compile_search(query: Query, tags: Collection[str] | None = None) -> Compiled:
    """Compile a search: one row per match, in the query's order, paged.

    ``tags`` (DICOM JSON keys such as "00100010"), when given, are all an
    instance match needs of its stored metadata: PostgreSQL keeps only those,
    so a page of instances does not carry (and decode) every attribute.
    """
    params = Params()
    where, unsupported = where_clause(query, params)
    metadata = "instance.metadata"
    if tags is not None and query.level == Level.IMAGE:
        metadata = (
            "COALESCE((SELECT json_object_agg(key, value) FROM "
            "json_each(instance.metadata) WHERE key = ANY("
            f"{params.add(sorted(tags))}::text[])), '{{}}'::json)"
        )
    if query.level == Level.PATIENT:
        sql, cursor_columns = _patient_sql(query, where, params)
    else:
        keys = _order_keys(query)
        if query.after is not None:
            where = f"({where}) AND {_keyset_condition(keys, query.after, params)}"
        sorts = [f"{expr} AS sort_{i}" for i, (expr, _, _) in enumerate(keys)]
        order = ", ".join(f"{e} DESC" if desc else e for e, _, desc in keys)
        sql = (
            f"SELECT {', '.join(_columns(query.level, metadata) + sorts)} "
            f"FROM {_from_clause(query.level)} WHERE {where} ORDER BY {order}"
        )
        cursor_columns = tuple(f"sort_{i}" for i in range(len(keys)))
    if query.limit is not None:
        sql += f" LIMIT {params.add(query.limit)}"
    if query.offset:
        sql += f" OFFSET {params.add(query.offset)}"
    return Compiled(sql, params.values, unsupported, cursor_columns)


def compile_count(query: Query) -> Compiled:
    """Compile the number of matches of a query, whatever its paging."""
    params = Params()
    where, unsupported = where_clause(query, params)
    if query.level == Level.PATIENT:
        sql = (
            "SELECT count(*) FROM (SELECT DISTINCT study.patient_id, "
            f"study.issuer_of_patient_id FROM study WHERE {where}) AS patients"
        )
    else:
        sql = f"SELECT count(*) FROM {_from_clause(query.level)} WHERE {where}"
    return Compiled(sql, params.values, unsupported)


def _patient_sql(
    query: Query, where: str, params: Params
) -> tuple[str, tuple[str, ...]]:
    if query.order:
        raise InvalidQuery(
            "Patient level matches come by PatientID; orderby is not supported"
        )
    if query.after is not None:
        keys = [
            ("study.patient_id", "text", False),
            ("study.issuer_of_patient_id", "text", False),
        ]
        where = f"({where}) AND {_keyset_condition(keys, query.after, params)}"
    sql = (
        "SELECT DISTINCT ON (study.patient_id, study.issuer_of_patient_id) "
        "study.pk AS study_pk, study.patient_id, study.issuer_of_patient_id, "
        "study.attributes AS study_attributes "
        f"FROM study WHERE {where} "
        "ORDER BY study.patient_id, study.issuer_of_patient_id, study.pk DESC"
    )
    return sql, ("patient_id", "issuer_of_patient_id")

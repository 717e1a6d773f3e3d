"""A query against the index, as QIDO-RS and C-FIND both express it."""

from __future__ import annotations

from dataclasses import dataclass, field

from archive.attributes import Level

# One value of a keyset cursor: a sort key's value (text, number or NULL).
CursorValue = str | int | None


@dataclass(frozen=True)
class OrderKey:
    """One sort key: a keyword of the level or above, ascending unless told."""

    keyword: str
    descending: bool = False


@dataclass(frozen=True)
class Query:
    """Match keys and return keys at one level, scoped to a study or series.

    ``keys`` maps a keyword (or ``Sequence.ItemKeyword`` for sequence matching)
    to its value in DICOM string form: an empty string is universal matching,
    a UID list is backslash-separated. ``include_all`` returns every stored
    attribute of the level; ``include`` adds keywords to the defaults.
    ``fuzzy`` matches person names as ``archive.person_name`` describes.
    Matches come in ``order`` (arrival order when empty), ties broken by
    arrival; ``after`` is a keyset cursor (``SearchResult.cursor`` of the
    previous page): only matches after it are returned, so rows that arrive
    or leave between pages shift nothing.
    """

    level: Level
    keys: dict[str, str] = field(default_factory=dict)
    include: frozenset[str] = frozenset()
    include_all: bool = False
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    order: tuple[OrderKey, ...] = ()
    after: tuple[CursorValue, ...] | None = None

"""Person names as the index keeps and matches them (PS3.5 6.2.1, PS3.4 C.2.2.2.1).

Literal matching compares one component group at a time, case-insensitively:
:func:`group_key` is the form kept in the ``*_ci`` columns and compared with.

Fuzzy matching (QIDO-RS ``fuzzymatching=true``, PS3.18 8.3.4.1) is defined by
dicomvault as follows. Names and query values are folded: case-folded, accents
and tone marks removed (``Müller`` is ``muller``, ``zhāng`` is ``zhang``), and
full- and half-width forms unified (NFKD). A folded name yields words, the runs
of letters and digits in any component of any group, plus each group with its
delimiters removed (``Wang^XiaoDong`` gives ``wang``, ``xiaodong`` and
``wangxiaodong``). A query value matches when every word of it is the start of
some word of the name, in any order and any group: ``john doe``, ``DOE^J`` and
``Jo`` all find ``Doe^John``; ``王小东``, ``小东`` and ``xiaodong`` find
``Wang^XiaoDong=王^小东``. A query of several words also matches as one word
(``xiao dong`` finds ``XiaoDong``). Wildcards do not widen this further: a word
ends at its first ``*`` or ``?``.
"""

from __future__ import annotations

import unicodedata

# Letters NFKD does not take apart into a base letter and a mark
_FOLDS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ħ": "h", "ı": "i", "þ": "th",
     "æ": "ae", "œ": "oe", "ŀ": "l", "ŧ": "t"}
)  # fmt: skip
_WILDCARDS = frozenset("*?")
# PostgreSQL keeps lexemes below 2 KiB; a name word is never near that.
MAX_WORD_CHARS = 200


def group_key(group: str | None) -> str | None:
    """One component group as kept for case-insensitive literal matching.

    Trailing spaces of each component and empty trailing components are not
    significant (PS3.5 6.2.1), so ``王^小明^^^`` is kept as ``王^小明``.
    """
    if not group:
        return None
    components = [component.rstrip(" ") for component in group.split("^")]
    while components and not components[-1]:
        components.pop()
    text = "^".join(components).lower()
    return text or None


def query_key(value: str) -> str:
    """A literal query value in the form :func:`group_key` keeps names in."""
    return "=".join(group_key(group) or "" for group in value.split("="))


def fold(text: str) -> str:
    """Case-fold, drop accents and unify width: the form fuzzy matching compares."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", kept.translate(_FOLDS))


def _runs(text: str, stop_at_wildcard: bool = False) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    skipping = False
    for char in text:
        if char.isalnum():
            if not skipping:
                current.append(char)
            continue
        if stop_at_wildcard and char in _WILDCARDS:
            skipping = True
            continue
        skipping = False
        if current:
            words.append("".join(current))
        current = []
    if current:
        words.append("".join(current))
    return [word[:MAX_WORD_CHARS] for word in words]


def name_words(value: str | None) -> list[str]:
    """The words of a whole PN value (groups joined by '=') for fuzzy matching."""
    if not value:
        return []
    words: list[str] = []
    for group in fold(value).split("="):
        parts = _runs(group)
        words += parts
        if len(parts) > 1:
            words.append("".join(parts)[:MAX_WORD_CHARS])
    return sorted(set(words))


def query_words(value: str) -> list[str]:
    """The word prefixes of a fuzzy query value; empty when it names none."""
    return _runs(fold(value), stop_at_wildcard=True)


def _lexeme(word: str) -> str:
    return "'" + word.replace("'", "''").replace("\\", "\\\\") + "':*"


def fuzzy_tsquery(value: str) -> str | None:
    """The tsquery text matching ``value`` fuzzily against :func:`name_words`.

    Values separated by backslashes are alternatives (multiple value matching);
    None means the value names no word, so every name matches.
    """
    alternatives: list[str] = []
    for part in value.split("\\"):
        words = query_words(part)
        if not words:
            return None
        every = " & ".join(_lexeme(word) for word in words)
        if len(words) > 1:
            joined = "".join(words)[:MAX_WORD_CHARS]
            every = f"(({every}) | {_lexeme(joined)})"
        alternatives.append(every)
    return " | ".join(alternatives)

"""Object key validation shared by every store."""

from __future__ import annotations

import re

from storage.errors import InvalidKey

MAX_KEY_LENGTH = 512

# Every component starts with a letter or digit, so "", ".", ".." and hidden
# names (such as a store's own temporary files) can never be keys.
_KEY_PATTERN = re.compile(r"[0-9a-zA-Z][0-9a-zA-Z._-]*(?:/[0-9a-zA-Z][0-9a-zA-Z._-]*)*")

_KEY_RULE = (
    "keys are '/'-separated names of letters, digits, '.', '_' and '-', each "
    f"starting with a letter or digit, at most {MAX_KEY_LENGTH} characters"
)


def is_valid_key(key: str) -> bool:
    """Tell whether key is a well-formed object key."""
    return len(key) <= MAX_KEY_LENGTH and _KEY_PATTERN.fullmatch(key) is not None


def check_key(key: str) -> str:
    """Return key unchanged, or raise InvalidKey saying what is wrong with it."""
    if is_valid_key(key):
        return key
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(
            f"Object key {key[:32]!r}... has {len(key)} characters, too long; "
            f"{_KEY_RULE}"
        )
    if ".." in key.split("/"):
        raise InvalidKey(f"Object key {key!r} has a '..' component; {_KEY_RULE}")
    raise InvalidKey(f"Invalid object key {key!r}; {_KEY_RULE}")


def could_prefix_keys(prefix: str) -> bool:
    """Tell whether some valid key could start with prefix.

    Everything before the last '/' of such a prefix is a run of whole components,
    so it must itself be a valid key.
    """
    folder, slash, _ = prefix.rpartition("/")
    return not slash or is_valid_key(folder)

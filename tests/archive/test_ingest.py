"""Ingestor decisions that need no index: which character set rule applies."""

from __future__ import annotations

from typing import Any, cast

from archive.ingest import DuplicatePolicy, Ingestor


def _ingestor(rules: dict[str, str]) -> Ingestor:
    unused = cast(Any, None)
    return Ingestor(
        unused,
        unused,
        unused,
        chunk_bytes=65536,
        duplicate_policy=DuplicatePolicy.REJECT,
        charset_fallbacks=rules,
    )


def test_a_sender_with_its_own_rule_gets_it_and_others_get_the_star_rule() -> None:
    ingestor = _ingestor({"CT_ROOM_2": "GBK", "*": "GB18030"})

    assert ingestor._fallback_for("CT_ROOM_2") == "GBK"
    assert ingestor._fallback_for("CT_ROOM_2 ") == "GBK"
    assert ingestor._fallback_for("MR_ROOM_1") == "GB18030"
    assert ingestor._fallback_for(None) == "GB18030"


def test_without_rules_no_sender_gets_a_fallback() -> None:
    assert _ingestor({})._fallback_for("CT_ROOM_2") is None

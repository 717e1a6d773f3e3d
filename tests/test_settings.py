"""Settings read from DICOMVAULT_* variables: the character set fallback rules."""

from __future__ import annotations

import pytest

from dicomvault.settings import SettingsError, load_settings


def test_charset_fallbacks_map_sources_to_defined_terms() -> None:
    settings = load_settings(
        {"DICOMVAULT_CHARSET_FALLBACKS": "CT_ROOM_2 = gb18030, *=ISO IR 100"}
    )
    assert settings.charset_fallback_rules == {
        "CT_ROOM_2": "GB18030",
        "*": "ISO_IR 100",
    }
    assert load_settings({}).charset_fallback_rules == {}


@pytest.mark.parametrize(
    "value", ["GB18030", "*=BIG5", "*=", "=GB18030", "A_VERY_LONG_AE_TITLE=GBK"]
)
def test_charset_fallbacks_refuse_what_is_not_source_equals_term(value: str) -> None:
    with pytest.raises(SettingsError, match="charset_fallbacks"):
        load_settings({"DICOMVAULT_CHARSET_FALLBACKS": value})

"""Accept parsing and DICOMweb negotiation against headers real clients send."""

from __future__ import annotations

import pytest

from dicomweb._media import MediaRange, Offer, negotiate, parse_accept

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000 = "1.2.840.10008.1.2.4.90"

DICOM_JSON = Offer("application/dicom+json")
JSON = Offer("application/json")
DICOM_PARTS = Offer("multipart/related", "application/dicom", EXPLICIT_LE)
OCTET_PARTS = Offer("multipart/related", "application/octet-stream", EXPLICIT_LE)
OFFERS = (DICOM_JSON, DICOM_PARTS, OCTET_PARTS)

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JAVA_URLCONNECTION = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"


def with_syntax(offer: Offer, transfer_syntax: str | None) -> Offer:
    """The offer as negotiate() returns it once a transfer syntax is settled."""
    return Offer(offer.media_type, offer.part_type, transfer_syntax)


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        pytest.param(None, DICOM_JSON, id="no Accept"),
        pytest.param("", DICOM_JSON, id="empty Accept"),
        pytest.param("*/*", DICOM_JSON, id="curl"),
        pytest.param(CHROME, DICOM_JSON, id="Chrome"),
        pytest.param(FIREFOX, DICOM_JSON, id="Firefox"),
        pytest.param(JAVA_URLCONNECTION, DICOM_JSON, id="Java bare *"),
        pytest.param(
            "application/dicom+json, application/json",
            DICOM_JSON,
            id="dicomweb-client search",
        ),
        pytest.param("application/dicom+json", DICOM_JSON, id="OHIF metadata"),
        pytest.param(
            'multipart/related; type="application/dicom"',
            DICOM_PARTS,
            id="dicomweb-client retrieve",
        ),
        pytest.param(
            'multipart/related; type="application/octet-stream"; transfer-syntax=*',
            with_syntax(OCTET_PARTS, None),
            id="OHIF frames, any syntax",
        ),
        pytest.param(
            "multipart/related; type=application/dicom",
            DICOM_PARTS,
            id="type unquoted",
        ),
        pytest.param(
            'multipart/related; type="Application/DICOM"',
            DICOM_PARTS,
            id="type in other case",
        ),
        pytest.param(
            'multipart/related; type="application/dicom"; boundary="a, b; c"',
            DICOM_PARTS,
            id="quoted boundary with comma",
        ),
        pytest.param(
            f"multipart/related; type=application/dicom; transfer-syntax={EXPLICIT_LE}",
            DICOM_PARTS,
            id="offered syntax",
        ),
        pytest.param("multipart/related", DICOM_PARTS, id="default part type"),
        pytest.param("application/*", DICOM_JSON, id="application wildcard"),
        pytest.param(
            "image/jpeg, multipart/*;q=0.5", DICOM_PARTS, id="multipart wildcard"
        ),
        pytest.param(
            "multipart/related; type=application/dicom; q=0.5, "
            "application/dicom+json; q=0.9",
            DICOM_JSON,
            id="higher q wins",
        ),
        pytest.param(
            'multipart/related; type="application/dicom", application/dicom+json',
            DICOM_PARTS,
            id="client order beats server order",
        ),
        pytest.param(
            "*/*, application/dicom+json; q=0",
            DICOM_PARTS,
            id="q=0 refuses a type that */* allows",
        ),
        pytest.param(
            "  ,, garbage, /, text/ html, */html, application/dicom+json;q=bad, "
            ' multipart/related ; type = "application/octet-stream" ; q=0.7 ,',
            OCTET_PARTS,
            id="garbage skipped",
        ),
    ],
)
def test_negotiate_picks_the_offer_real_clients_expect(
    accept: str | None, chosen: Offer
) -> None:
    assert negotiate(accept, OFFERS) == chosen


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param("image/jpeg", id="rendered only"),
        pytest.param("text/html", id="a page"),
        pytest.param("application/dicom+json;q=0, multipart/*;q=0", id="all refused"),
        pytest.param("*/*;q=0", id="nothing at all"),
        pytest.param(
            'multipart/related; type="application/dicom+xml"', id="other part type"
        ),
        pytest.param(
            f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_2000}',
            id="syntax the server cannot make",
        ),
    ],
)
def test_negotiate_returns_none_for_406(accept: str) -> None:
    assert negotiate(accept, OFFERS) is None


def test_negotiate_text_star_is_overridden_by_a_more_specific_range() -> None:
    accept = "application/*;q=0.9, application/dicom+json;q=0.2"

    assert negotiate(accept, (DICOM_JSON, JSON)) == JSON


def test_negotiate_lets_a_refusal_win_over_an_equally_specific_range() -> None:
    accept = "application/dicom+json, application/json, application/dicom+json;q=0"

    assert negotiate(accept, (DICOM_JSON, JSON)) == JSON


def test_negotiate_with_no_offers_finds_nothing() -> None:
    assert negotiate("*/*", ()) is None


@pytest.mark.parametrize(
    ("requested", "allowed", "chosen"),
    [
        pytest.param(None, (), EXPLICIT_LE, id="absent: the offer's default"),
        pytest.param("*", (), None, id="*: as stored"),
        pytest.param(EXPLICIT_LE, (), EXPLICIT_LE, id="the offer's own"),
        pytest.param(JPEG_BASELINE, (JPEG_BASELINE,), JPEG_BASELINE, id="allowed"),
    ],
)
def test_negotiate_fills_in_the_transfer_syntax_to_send(
    requested: str | None, allowed: tuple[str, ...], chosen: str | None
) -> None:
    accept = 'multipart/related; type="application/dicom"'
    if requested is not None:
        accept += f"; transfer-syntax={requested}"

    offer = negotiate(accept, (DICOM_PARTS,), allowed)

    assert offer == with_syntax(DICOM_PARTS, chosen)


def test_negotiate_refuses_a_syntax_that_is_not_allowed() -> None:
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_2000}'

    assert negotiate(accept, (DICOM_PARTS,), (JPEG_BASELINE,)) is None


def test_negotiate_weighs_requested_syntaxes_by_q() -> None:
    accept = (
        f"multipart/related; type=application/dicom; transfer-syntax={JPEG_2000}, "
        f"multipart/related; type=application/dicom; transfer-syntax={JPEG_BASELINE};"
        "q=0.9, multipart/related; type=application/dicom; transfer-syntax=*; q=0.5"
    )

    assert negotiate(accept, (DICOM_PARTS,), (JPEG_BASELINE,)) == with_syntax(
        DICOM_PARTS, JPEG_BASELINE
    )
    assert negotiate(accept, (DICOM_PARTS,)) == with_syntax(DICOM_PARTS, None)


def test_negotiate_q_0_on_one_syntax_leaves_the_others() -> None:
    accept = (
        "multipart/related; type=application/dicom; transfer-syntax=*, "
        f"multipart/related; type=application/dicom; transfer-syntax={JPEG_BASELINE}"
        "; q=0"
    )

    offer = negotiate(accept, (DICOM_PARTS,), (JPEG_BASELINE,))

    assert offer == with_syntax(DICOM_PARTS, None)


def test_offer_takes_star_for_as_stored() -> None:
    assert Offer("multipart/related", "application/dicom", "*") == Offer(
        "multipart/related", "application/dicom", None
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("multipart/related",), "needs a part_type"),
        (("application/dicom", "application/dicom"), "is not multipart"),
        (("application",), "is not type/subtype"),
        (("application/*",), "has a wildcard"),
        (("multipart/related", "application/dicom", "1.2.x"), "is not a UID"),
        (("multipart/related", "application/dicom", "1." * 40 + "1"), "is not a UID"),
    ],
)
def test_offer_checks_its_fields(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Offer(*args)


@pytest.mark.parametrize(
    ("accept", "ranges"),
    [
        (None, [MediaRange("*", "*")]),
        ("", [MediaRange("*", "*")]),
        (" , ,, ", [MediaRange("*", "*")]),
        ("garbage, */html, text/", [MediaRange("*", "*")]),
        (
            'Multipart/Related; Type="application/dicom"; transfer-syntax=*; q=0.8',
            [
                MediaRange(
                    "multipart",
                    "related",
                    {"type": "application/dicom", "transfer-syntax": "*"},
                    0.8,
                )
            ],
        ),
        (
            'multipart/related; boundary="a,b;c", application/json',
            [
                MediaRange("multipart", "related", {"boundary": "a,b;c"}),
                MediaRange("application", "json"),
            ],
        ),
        (
            "text/html;level=1;q=0.5;ext=x, text/plain;q=0, text/xml;q=.25",
            [
                MediaRange("text", "html", {"level": "1"}, 0.5),
                MediaRange("text", "plain", {}, 0.0),
                MediaRange("text", "xml", {}, 0.25),
            ],
        ),
        (
            "a/b;q=abc, a/c;q=2, a/d;q=-1, a/e;q=nan, a/f;q=1",
            [MediaRange("a", "f")],
        ),
        ("*; q=.2", [MediaRange("*", "*", {}, 0.2)]),
        ('a/b; p="unterminated, a/c', [MediaRange("*", "*")]),
    ],
)
def test_parse_accept_keeps_order_and_skips_garbage(
    accept: str | None, ranges: list[MediaRange]
) -> None:
    assert parse_accept(accept) == ranges

"""docs/conformance.md against what the listener really negotiates (PS3.2)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import islice

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import build_context, build_role
from pynetdicom.presentation import PresentationContext

from dimse._contexts import (
    FIND_SOP_CLASSES,
    GET_SOP_CLASSES,
    MOVE_SOP_CLASSES,
    NATIVE_TRANSFER_SYNTAXES,
    STORAGE_SOP_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    VERIFICATION,
)
from dimse._part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tests.conftest import ROOT, RunningServer
from tests.dimse.helpers import new_ae

pytestmark = pytest.mark.timeout(300)

STATEMENT = ROOT / "docs" / "conformance.md"
_UID_CELL = re.compile(r"^\|[^|]*\|\s*`([0-9.]+)`\s*\|")
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
MPEG2_MAIN_PROFILE = "1.2.840.10008.1.2.4.100"


def table_uids(title: str) -> list[str]:
    """The UIDs in the second column of the table under a heading with ``title``."""
    lines = STATEMENT.read_text(encoding="utf-8").splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("#") and title in line
    )
    found: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        match = _UID_CELL.match(line)
        if match:
            found.append(match.group(1))
    assert found, f"No table rows under {title!r}"
    return found


def test_statement_lists_the_query_retrieve_and_verification_classes() -> None:
    listed = table_uids("Table 4.2-1")
    served = {VERIFICATION, *FIND_SOP_CLASSES, *MOVE_SOP_CLASSES, *GET_SOP_CLASSES}
    assert sorted(listed) == sorted(served)
    assert set(table_uids("Table 4.2-2")) == set(NATIVE_TRANSFER_SYNTAXES)


def test_statement_lists_every_storage_class_and_syntax() -> None:
    assert sorted(table_uids("Table 4.2-3")) == sorted(STORAGE_SOP_CLASSES)
    assert sorted(table_uids("Table 4.2-4")) == sorted(STORAGE_TRANSFER_SYNTAXES)


def test_statement_names_the_implementation() -> None:
    text = STATEMENT.read_text(encoding="utf-8")
    assert f"`{IMPLEMENTATION_CLASS_UID}`" in text
    assert f"`{IMPLEMENTATION_VERSION_NAME}`" in text


def _chunks(
    contexts: list[PresentationContext], size: int = 128
) -> Iterator[list[PresentationContext]]:
    it = iter(contexts)
    while chunk := list(islice(it, size)):
        yield chunk


def _negotiate(
    server: RunningServer, contexts: list[PresentationContext]
) -> set[tuple[str, str]]:
    """Propose the contexts, 128 at a time; the (SOP class, syntax) pairs accepted."""
    accepted: set[tuple[str, str]] = set()
    for chunk in _chunks(contexts):
        ae = new_ae("CONFORMANCE")
        assoc = ae.associate(
            "127.0.0.1", server.dimse_port, contexts=chunk, ae_title=server.ae_title
        )
        try:
            if assoc.is_established:
                accepted |= {
                    (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                    for cx in assoc.accepted_contexts
                }
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()
    return accepted


def _pairs(classes: list[str], syntaxes: list[str]) -> list[tuple[str, str]]:
    return [(sop, syntax) for sop in classes for syntax in syntaxes]


def test_listener_accepts_every_listed_query_retrieve_context(
    server: RunningServer,
) -> None:
    pairs = _pairs(table_uids("Table 4.2-1"), table_uids("Table 4.2-2"))
    contexts = [build_context(sop, [syntax]) for sop, syntax in pairs]
    assert _negotiate(server, contexts) == set(pairs)


def test_listener_accepts_every_listed_storage_context(server: RunningServer) -> None:
    pairs = _pairs(table_uids("Table 4.2-3"), table_uids("Table 4.2-4"))
    contexts = [build_context(sop, [syntax]) for sop, syntax in pairs]
    assert _negotiate(server, contexts) == set(pairs)


def test_listener_refuses_what_the_statement_does_not_list(
    server: RunningServer,
) -> None:
    contexts = [
        build_context(MODALITY_WORKLIST_FIND, ExplicitVRLittleEndian),
        build_context(CTImageStorage, MPEG2_MAIN_PROFILE),
        build_context(VERIFICATION),
    ]
    assert _negotiate(server, contexts) == {(VERIFICATION, "1.2.840.10008.1.2")}


def test_listener_lets_a_c_get_caller_take_the_storage_scp_role(
    server: RunningServer,
) -> None:
    ae = new_ae("GETTER")
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        contexts=[build_context(CTImageStorage, ExplicitVRLittleEndian)],
        ae_title=server.ae_title,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
    )
    try:
        assert assoc.is_established
        (context,) = assoc.accepted_contexts
        assert context.as_scp and not context.as_scu  # as proposed
        assert assoc.acceptor.implementation_class_uid == IMPLEMENTATION_CLASS_UID
        assert assoc.acceptor.implementation_version_name == IMPLEMENTATION_VERSION_NAME
        # The statement says 1 MiB by default for what we receive.
        assert assoc.acceptor.maximum_length == 1 << 20
    finally:
        assoc.release()
        ae.shutdown()


def test_listener_takes_the_callers_first_listed_syntax(server: RunningServer) -> None:
    syntaxes = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"]
    ae = new_ae("ORDER")
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        contexts=[build_context(CTImageStorage, syntaxes)],
        ae_title=server.ae_title,
    )
    try:
        (context,) = assoc.accepted_contexts
        assert context.transfer_syntax == [syntaxes[0]]
    finally:
        assoc.release()
        ae.shutdown()

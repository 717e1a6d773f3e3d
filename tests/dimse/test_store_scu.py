"""The archive's own storage association, as C-MOVE uses it (PS3.8 9.3, PS3.7 9.3.1).

The encoding tests read what ``dimse.store_scu`` writes with pydicom; the
C-MOVE tests send to pynetdicom storage SCPs set up to stress the sender: a
small Maximum Length, one transfer syntax only, a calling AE title it refuses,
an association it aborts in the middle.
"""

from __future__ import annotations

import io
import secrets
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pydicom
import pytest
from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from dimse._contexts import STUDY_ROOT_MOVE
from dimse._wire import c_store_rq, p_data_message, p_data_pdus, pdv_items
from tests.conftest import RunningServer
from tests.dimse.helpers import (
    ScriptedStorage,
    associate,
    contexts_for,
    dataset_bytes,
    put_peer,
    store_datasets,
    wado_instance,
    with_meta,
)
from tests.factory import UID_ROOT, make_ct

pytestmark = pytest.mark.timeout(120)

MakePeer = Callable[..., ScriptedStorage]


def _pdus(stream: bytes) -> list[tuple[int, int, int, bytes]]:
    """(PDU length, context ID, message control header, fragment) of each PDU."""
    found = []
    offset = 0
    while offset < len(stream):
        kind, length = struct.unpack_from(">BxL", stream, offset)
        assert kind == 0x04
        item_length, context_id, control = struct.unpack_from(
            ">LBB", stream, offset + 6
        )
        assert item_length == length - 4, "one PDV item per PDU"
        fragment = stream[offset + 12 : offset + 6 + length]
        found.append((length, context_id, control, fragment))
        offset += 6 + length
    return found


@pytest.mark.parametrize("max_pdu", [4096, 16384, 65536])
def test_a_data_set_is_cut_into_pdus_within_the_peers_maximum_length(
    max_pdu: int,
) -> None:
    payload = secrets.token_bytes(100_003)
    pdus = _pdus(p_data_pdus(5, 0x00, payload, max_pdu))
    assert all(length <= max_pdu for length, _, _, _ in pdus)
    assert b"".join(fragment for *_, fragment in pdus) == payload
    assert {context for _, context, _, _ in pdus} == {5}
    # PS3.8 E.2: bit 1 marks the last fragment, and only the last.
    assert [control for _, _, control, _ in pdus] == [0x00] * (len(pdus) - 1) + [0x02]


def test_an_unlimited_peer_gets_large_pdus_and_a_command_its_own_flags() -> None:
    payload = secrets.token_bytes(3_000_000)
    pdus = _pdus(p_data_pdus(1, 0x01, payload, 0))
    assert len(pdus) == 3
    assert [control for _, _, control, _ in pdus] == [0x01, 0x01, 0x03]
    assert b"".join(fragment for *_, fragment in pdus) == payload


def test_an_empty_payload_is_one_last_fragment() -> None:
    assert _pdus(p_data_pdus(3, 0x01, b"", 16384)) == [(6, 3, 0x03, b"")]


def test_a_message_that_fits_goes_as_two_pdvs_of_one_pdu() -> None:
    command, identifier = secrets.token_bytes(91), secrets.token_bytes(300)
    stream = p_data_message(7, command, identifier, 16384)
    kind, length = struct.unpack_from(">BxL", stream)
    assert (kind, length) == (0x04, len(stream) - 6)
    items = [(c, control, bytes(f)) for c, control, f in pdv_items(stream[6:])]
    assert items == [(7, 0x03, command), (7, 0x02, identifier)]


def test_a_message_that_does_not_fit_is_cut_within_the_maximum_length() -> None:
    command, identifier = secrets.token_bytes(91), secrets.token_bytes(9000)
    pdus = _pdus(p_data_message(7, command, identifier, 4096))
    assert all(length <= 4096 for length, _, _, _ in pdus)
    assert pdus[0][2:] == (0x03, command)
    assert b"".join(fragment for *_, fragment in pdus[1:]) == identifier
    assert p_data_message(7, command, None, 4096) == p_data_pdus(7, 1, command, 4096)


def _command(encoded: bytes) -> Dataset:
    return read_dataset(io.BytesIO(encoded), True, True)


def test_the_c_store_request_command_reads_back_with_its_group_length() -> None:
    sop = "1.2.3.4.5"  # odd length: padded with NUL
    encoded = c_store_rq(CTImageStorage, sop, 7, "MOVER", 3)
    command = _command(encoded)
    assert command.CommandGroupLength == len(encoded) - 12
    assert command.AffectedSOPClassUID == CTImageStorage
    assert command.AffectedSOPInstanceUID == sop
    assert command.CommandField == 0x0001
    assert command.MessageID == 7
    assert command.CommandDataSetType != 0x0101
    assert command.MoveOriginatorApplicationEntityTitle == "MOVER"
    assert command.MoveOriginatorMessageID == 3
    assert len(encoded) % 2 == 0


def test_a_request_without_an_originator_leaves_both_originator_fields_out() -> None:
    command = _command(c_store_rq(CTImageStorage, "1.2.3", 1, None, None))
    assert "MoveOriginatorApplicationEntityTitle" not in command
    assert "MoveOriginatorMessageID" not in command


def _uid() -> str:
    return str(generate_uid(prefix=UID_ROOT))


@pytest.fixture(scope="module")
def series(server: RunningServer) -> tuple[str, str, list[str]]:
    """One stored CT series of three images with 64x64 pixels, Explicit VR LE."""
    study, series, sops = _uid(), _uid(), [_uid() for _ in range(3)]
    datasets = [
        with_meta(
            make_ct(
                study=study,
                series=series,
                sop=sop,
                rows=64,
                columns=64,
                InstanceNumber=number,
            ),
            ExplicitVRLittleEndian,
        )
        for number, sop in enumerate(sops, start=1)
    ]
    assert store_datasets(server, datasets) == [0x0000] * 3
    return study, series, sops


def move_series(
    server: RunningServer, destination: str, study: str, series: str
) -> list[tuple[Dataset, Dataset | None]]:
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study
    query.SeriesInstanceUID = series
    contexts = contexts_for([(STUDY_ROOT_MOVE, ExplicitVRLittleEndian)])
    with associate(server, contexts) as assoc:
        return list(assoc.send_c_move(query, destination, STUDY_ROOT_MOVE))


@pytest.fixture
def make_peer(server: RunningServer) -> Iterator[MakePeer]:
    """Storage SCPs for CT under fresh AE titles, closed after the test."""
    made: list[ScriptedStorage] = []

    def make(**options: Any) -> ScriptedStorage:
        title = f"SCU{secrets.token_hex(3).upper()}"
        peer = ScriptedStorage(title, [CTImageStorage], **options)
        put_peer(server, title, peer.port)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def _stored(server: RunningServer, study: str, series: str, sop: str) -> bytes:
    return dataset_bytes(wado_instance(server, study, series, sop))


def test_a_destination_with_a_small_maximum_length_receives_every_byte(
    server: RunningServer, series: tuple[str, str, list[str]], make_peer: MakePeer
) -> None:
    study, series_uid, sops = series
    peer = make_peer(max_pdu=4096)
    responses = move_series(server, peer.ae_title, study, series_uid)
    assert int(responses[-1][0].Status) == 0x0000
    assert responses[-1][0].NumberOfCompletedSuboperations == 3
    expected = {_stored(server, study, series_uid, sop) for sop in sops}
    assert set(peer.received_wire) == expected
    assert peer.received_syntaxes == [ExplicitVRLittleEndian] * 3


def test_a_destination_taking_only_implicit_vr_gets_the_instances_converted(
    server: RunningServer, series: tuple[str, str, list[str]], make_peer: MakePeer
) -> None:
    study, series_uid, sops = series
    peer = make_peer(transfer_syntaxes=[ImplicitVRLittleEndian])
    responses = move_series(server, peer.ae_title, study, series_uid)
    assert int(responses[-1][0].Status) == 0x0000
    assert peer.received_syntaxes == [ImplicitVRLittleEndian] * 3
    received = {}
    for encoded in peer.received_wire:
        ds = read_dataset(io.BytesIO(encoded), True, True)
        received[str(ds.SOPInstanceUID)] = ds
    assert set(received) == set(sops)
    for sop, ds in received.items():
        original = pydicom.dcmread(
            io.BytesIO(wado_instance(server, study, series_uid, sop))
        )
        assert ds.PixelData == original.PixelData
        assert ds.PatientName == original.PatientName


def test_a_deflated_instance_goes_deflated_or_inflated_as_the_destination_accepts(
    server: RunningServer, make_peer: MakePeer
) -> None:
    study, series_uid, sop = _uid(), _uid(), _uid()
    ds = with_meta(
        make_ct(study=study, series=series_uid, sop=sop), DeflatedExplicitVRLittleEndian
    )
    assert store_datasets(server, [ds]) == [0x0000]
    as_stored = wado_instance(server, study, series_uid, sop)
    deflating = make_peer(transfer_syntaxes=[DeflatedExplicitVRLittleEndian])
    explicit = make_peer(transfer_syntaxes=[ExplicitVRLittleEndian])
    for peer in (deflating, explicit):
        responses = move_series(server, peer.ae_title, study, series_uid)
        assert int(responses[-1][0].Status) == 0x0000
    # The deflated data set went as stored, still deflated.
    assert deflating.received_wire == [as_stored[-len(deflating.received_wire[0]) :]]
    assert dataset_bytes(deflating.received[0]) == dataset_bytes(as_stored)
    assert deflating.received_syntaxes == [DeflatedExplicitVRLittleEndian]
    assert explicit.received_syntaxes == [ExplicitVRLittleEndian]
    moved = read_dataset(io.BytesIO(explicit.received_wire[0]), False, True)
    assert moved.SOPInstanceUID == sop
    assert moved.PixelData == pydicom.dcmread(io.BytesIO(as_stored)).PixelData


def test_a_destination_rejecting_the_association_fails_every_sub_operation(
    server: RunningServer, series: tuple[str, str, list[str]], make_peer: MakePeer
) -> None:
    study, series_uid, sops = series
    peer = make_peer(calling_ae_titles=["SOMEONE-ELSE"])
    ((final, identifier),) = move_series(server, peer.ae_title, study, series_uid)
    assert int(final.Status) == 0xA702
    assert final.NumberOfFailedSuboperations == 3
    assert identifier is not None
    assert set(identifier.FailedSOPInstanceUIDList) == set(sops)
    assert peer.received == []


def test_a_destination_aborting_midway_fails_the_rest_and_the_archive_goes_on(
    server: RunningServer, series: tuple[str, str, list[str]], make_peer: MakePeer
) -> None:
    study, series_uid, sops = series
    peer = make_peer()
    responses = move_series(server, peer.ae_title, study, series_uid)
    # The order of sending is the archive's: abort on the second one it sends.
    order = [
        str(read_dataset(io.BytesIO(encoded), False, True).SOPInstanceUID)
        for encoded in peer.received_wire
    ]
    assert sorted(order) == sorted(sops)
    assert int(responses[-1][0].Status) == 0x0000

    aborting = make_peer(abort_on={order[1]})
    responses = move_series(server, aborting.ae_title, study, series_uid)
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000
    assert final.NumberOfCompletedSuboperations == 1
    assert final.NumberOfFailedSuboperations == 2
    assert identifier is not None
    assert set(identifier.FailedSOPInstanceUIDList) == set(order[1:])
    # Nothing stored changed, and the archive still serves the moved series.
    again = make_peer()
    responses = move_series(server, again.ae_title, study, series_uid)
    assert int(responses[-1][0].Status) == 0x0000
    assert set(again.received_wire) == set(peer.received_wire)

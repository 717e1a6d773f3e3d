"""C-STORE SCP (PS3.4 B.2): stored as received, found over DICOMweb, statuses."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLossless,
    MRImageStorage,
    generate_uid,
)
from pynetdicom import _config, build_context
from pynetdicom.dsutils import encode

from archive.errors import InvalidInstance
from archive.parse import parse_instance
from dimse._contexts import STUDY_ROOT_GET
from dimse._part10 import file_meta, part10_header
from dimse.c_store import check_context
from dimse.errors import ContextMismatch
from tests.conftest import (
    CORPUS,
    RunningServer,
    free_port,
    start_server,
    stop_server,
)
from tests.dimse.helpers import (
    STORESCU_OPTION,
    CorpusFile,
    associate,
    contexts_for,
    dataset_bytes,
    dcmtk,
    first_of_each_instance,
    qido,
    run_tool,
    send_raw_c_store,
    store_datasets,
    transfer_syntax_of,
    valid_corpus,
    wado_instance,
    wait_for_port,
    with_meta,
)
from tests.factory import UID_ROOT, make_ct, new_uid

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own, so that file counts and corpus UIDs are ours alone."""
    running = start_server(tmp_path_factory.mktemp("store") / "data")
    yield running
    assert stop_server(running) == 0, running.log()


@pytest.fixture
def raw_file_sends() -> Iterator[None]:
    """Make pynetdicom send files as they are on disk (no decoding)."""
    before = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = before


def _send_files(server: RunningServer, files: list[CorpusFile]) -> list[int]:
    pairs = [(item.sop_class_uid, item.transfer_syntax_uid) for item in files]
    with associate(server, contexts_for(pairs)) as assoc:
        return [int(assoc.send_c_store(item.path).Status) for item in files]


def _storescu(server: RunningServer, files: list[CorpusFile]) -> None:
    by_option: dict[str, list[CorpusFile]] = {}
    for item in files:
        by_option.setdefault(STORESCU_OPTION[item.transfer_syntax_uid], []).append(item)
    for option, group in by_option.items():
        run_tool(
            [
                dcmtk("storescu"), "-R", option, "-aec", server.ae_title,
                "127.0.0.1", str(server.dimse_port),
                *(str(item.path) for item in group),
            ]
        )  # fmt: skip


def _dcmtk_can_send(item: CorpusFile) -> bool:
    # DCMTK 3.6.7 knows no HTJ2K syntax and cannot see UIDs encoded as UN.
    return item.transfer_syntax_uid in STORESCU_OPTION and "un_elements" not in str(
        item.path
    )


def _meta_disagrees(item: CorpusFile) -> bool:
    meta = pydicom.dcmread(item.path, stop_before_pixels=True).file_meta
    return str(meta.MediaStorageSOPInstanceUID) != item.sop_instance_uid


def _stored_mismatches(server: RunningServer, expected: dict[str, bytes]) -> list[str]:
    """SOP Instance UIDs whose stored data set is not the expected bytes."""
    wrong = []
    for item in first_of_each_instance(valid_corpus()):
        if item.sop_instance_uid not in expected:
            continue
        stored = wado_instance(
            server,
            item.study_instance_uid,
            item.series_instance_uid,
            item.sop_instance_uid,
        )
        if dataset_bytes(stored) != expected[item.sop_instance_uid]:
            wrong.append(item.path.name)
    return wrong


@pytest.mark.corpus
@pytest.mark.server
@pytest.mark.usefixtures("lenient_pydicom", "raw_file_sends")
def test_corpus_sent_as_files_comes_back_over_wado_byte_identical(
    store_server: RunningServer,
) -> None:
    files = first_of_each_instance(valid_corpus())
    if not files:
        pytest.skip("../shared/testdata is absent")
    statuses = dict(zip(files, _send_files(store_server, files)))
    # A file whose meta names another SOP instance than its data set is refused.
    mismatched = {item for item in files if _meta_disagrees(item)}
    assert {item.path.name: statuses[item] for item in mismatched} == {
        item.path.name: 0xA900 for item in mismatched
    }
    assert {statuses[item] for item in files if item not in mismatched} == {0x0000}
    files = [item for item in files if item not in mismatched]
    expected = {
        item.sop_instance_uid: dataset_bytes(item.path.read_bytes()) for item in files
    }
    assert _stored_mismatches(store_server, expected) == []
    for item in files:
        stored = wado_instance(
            store_server,
            item.study_instance_uid,
            item.series_instance_uid,
            item.sop_instance_uid,
        )
        assert transfer_syntax_of(stored) == item.transfer_syntax_uid, item.path


@pytest.fixture(scope="module")
def dcmtk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server for what DCMTK's storescu sends (it re-encodes lengths)."""
    running = start_server(tmp_path_factory.mktemp("dcmtk") / "data")
    yield running
    assert stop_server(running) == 0, running.log()


@pytest.mark.corpus
@pytest.mark.server
@pytest.mark.usefixtures("lenient_pydicom", "dcmtk_tools")
def test_corpus_sent_by_storescu_is_stored_as_storescp_receives_it(
    dcmtk_server: RunningServer, tmp_path: Path
) -> None:
    files = [i for i in first_of_each_instance(valid_corpus()) if _dcmtk_can_send(i)]
    if not files:
        pytest.skip("../shared/testdata is absent")
    reference = tmp_path / "reference"
    reference.mkdir()
    port = free_port()
    # DCMTK's own SCP in bit-preserving mode records what storescu puts on the wire.
    scp = subprocess.Popen(
        [dcmtk("storescp"), "+B", "+xa", "-aet", "REFERENCE", "-od", str(reference),
         str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        _storescu(RunningServer(scp, "", port, "REFERENCE", tmp_path, tmp_path), files)
    finally:
        scp.terminate()
        scp.wait(timeout=30)
    _storescu(dcmtk_server, files)
    expected = {}
    for path in reference.iterdir():
        data = path.read_bytes()
        uid = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
        expected[str(uid)] = dataset_bytes(data)
    assert len(expected) == len(files)
    assert _stored_mismatches(dcmtk_server, expected) == []


@pytest.mark.corpus
@pytest.mark.usefixtures("lenient_pydicom")
@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("ct_mr/mr_toshiba_64_explicit_le.dcm", ExplicitVRLittleEndian),
        ("transfer_syntax/ts_implicit_vr_le_mr.dcm", ImplicitVRLittleEndian),
        ("transfer_syntax/ts_explicit_vr_be_mr.dcm", ExplicitVRBigEndian),
        (
            "transfer_syntax/ts_deflated_explicit_le_sc.dcm",
            DeflatedExplicitVRLittleEndian,
        ),
        ("transfer_syntax/ts_jpeg_baseline_rgb_sc.dcm", None),
        ("transfer_syntax/ts_jpeg_extended_12bit_nm.dcm", None),
        ("transfer_syntax/ts_jpeg_lossless_sv1_ct_512.dcm", None),
        # A first-order prediction stream is a valid Process 14 stream too.
        ("transfer_syntax/ts_jpeg_lossless_sv1_ct_512.dcm", JPEGLossless),
        ("transfer_syntax/ts_jpeg_ls_lossless_mr.dcm", None),
        ("transfer_syntax/ts_jpeg_ls_near_lossless_16bit.dcm", None),
        ("transfer_syntax/ts_jpeg2000_lossless_mr.dcm", None),
        ("transfer_syntax/ts_jpeg2000_lossy_ct_512.dcm", None),
        ("transfer_syntax/ts_htj2k_lossy_rgb_sc.dcm", None),
        ("transfer_syntax/ts_rle_lossless_mr.dcm", None),
    ],
)
def test_every_transfer_syntax_is_stored_as_received(
    server: RunningServer, name: str, syntax: str | None
) -> None:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip("../shared/testdata is absent")
    ds = pydicom.dcmread(path)
    target = UID(syntax or ds.file_meta.TransferSyntaxUID)
    ds.SOPInstanceUID = generate_uid(prefix=UID_ROOT)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    # Two of these pydicom test files have no study or series: the archive needs one.
    ds.StudyInstanceUID = ds.get("StudyInstanceUID") or generate_uid(prefix=UID_ROOT)
    ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or generate_uid(prefix=UID_ROOT)
    ds.file_meta.TransferSyntaxUID = target
    assert store_datasets(server, [ds]) == [0x0000]
    sent = encode(ds, target.is_implicit_VR, target.is_little_endian)
    stored = wado_instance(
        server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert transfer_syntax_of(stored) == target
    assert dataset_bytes(stored) == sent


def test_repeated_store_of_the_same_instance_succeeds(server: RunningServer) -> None:
    ds = with_meta(make_ct(), ExplicitVRLittleEndian)
    assert store_datasets(server, [ds, ds]) == [0x0000, 0x0000]


def test_store_without_study_uid_answers_data_set_does_not_match(
    server: RunningServer,
) -> None:
    ds = with_meta(make_ct(), ExplicitVRLittleEndian)
    del ds.StudyInstanceUID
    (status,) = store_datasets(server, [ds])
    assert status == 0xA900


@pytest.mark.corpus
@pytest.mark.usefixtures("raw_file_sends")
def test_store_of_a_truncated_data_set_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    source = CORPUS / "broken" / "gen_truncated_mid_dataset_ct.dcm"
    if not source.is_file():
        pytest.skip("../shared/testdata is absent")
    with associate(
        server, contexts_for([(CTImageStorage, ExplicitVRLittleEndian)])
    ) as assoc:
        status = int(assoc.send_c_store(source).Status)
    assert status != 0x0000
    assert status & 0xF000 in (0xA000, 0xC000)


def _object_files(server: RunningServer) -> set[Path]:
    root = server.data_dir
    return {
        path
        for path in root.parent.rglob("*")
        if path.is_file()
        and "pg" not in path.relative_to(root.parent).parts[:2]
        and path.suffix != ".log"
    }


@pytest.mark.server
@pytest.mark.usefixtures("lenient_pydicom")
def test_sop_instance_uid_with_path_segments_is_refused_and_writes_nothing(
    store_server: RunningServer,
) -> None:
    before = _object_files(store_server)
    ds = with_meta(make_ct(), ExplicitVRLittleEndian)
    ds.SOPInstanceUID = "1.2/../../x"
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2/../../x")
    (status,) = store_datasets(store_server, [ds])
    assert status == 0xA900
    assert _object_files(store_server) == before
    assert not list(store_server.data_dir.parent.parent.glob("x*"))
    found = qido(store_server, "instances", {"StudyInstanceUID": ds.StudyInstanceUID})
    assert found == []


def test_stored_instance_is_found_over_qido_at_once(server: RunningServer) -> None:
    ds = with_meta(make_ct(PatientID="QIDO-AT-ONCE"), ExplicitVRLittleEndian)
    assert store_datasets(server, [ds]) == [0x0000]
    found = qido(server, "studies", {"PatientID": "QIDO-AT-ONCE"})
    assert [match["0020000D"]["Value"][0] for match in found] == [ds.StudyInstanceUID]
    assert (
        io.BytesIO(
            wado_instance(
                server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
            )
        ).read(132)[128:]
        == b"DICM"
    )


def test_instance_with_large_private_sequence_after_pixel_data_is_stored(
    server: RunningServer,
) -> None:
    # DCMTK sends sequences with explicit lengths; GE puts private ones last.
    ds = make_ct()
    ds.add_new(0x7FE10010, "LO", "GEMS_Ultrasound_MovieGroup_001")
    item = Dataset()
    item.add_new(0x7FE10010, "LO", "GEMS_Ultrasound_MovieGroup_001")
    item.add_new(0x7FE11002, "LT", "x" * 2000)
    # pydicom writes this sequence and its item with defined lengths, as DCMTK does.
    ds.add_new(0x7FE11001, "SQ", [item])
    ds = with_meta(ds, ExplicitVRLittleEndian)
    assert store_datasets(server, [ds]) == [0x0000]
    stored = wado_instance(
        server, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert pydicom.dcmread(io.BytesIO(stored))[0x7FE11001][0][0x7FE11002].value == (
        "x" * 2000
    )


def _encoded(ds: Dataset, implicit_vr: bool, little_endian: bool = True) -> bytes:
    data = encode(ds, implicit_vr, little_endian)
    assert data is not None, "pydicom could not encode the data set"
    return data


@pytest.mark.server
def test_store_naming_another_sop_class_than_its_context_is_refused(
    store_server: RunningServer,
) -> None:
    before = _object_files(store_server)
    ds = make_ct(Modality="MR")
    ds.SOPClassUID = MRImageStorage
    with associate(
        store_server, contexts_for([(CTImageStorage, ExplicitVRLittleEndian)])
    ) as assoc:
        (context,) = assoc.accepted_contexts
        status = send_raw_c_store(
            assoc, context, MRImageStorage, ds.SOPInstanceUID, _encoded(ds, False)
        )
    assert status == 0x0122
    assert _object_files(store_server) == before
    found = qido(store_server, "instances", {"StudyInstanceUID": ds.StudyInstanceUID})
    assert found == []


@pytest.mark.server
@pytest.mark.parametrize(
    ("context_syntax", "implicit_bytes"),
    [(ExplicitVRLittleEndian, True), (ImplicitVRLittleEndian, False)],
)
def test_store_encoded_in_another_vr_mode_than_its_context_is_refused(
    store_server: RunningServer, context_syntax: str, implicit_bytes: bool
) -> None:
    before = _object_files(store_server)
    ds = make_ct()
    contexts = contexts_for([(CTImageStorage, context_syntax)])
    with associate(store_server, contexts) as assoc:
        (context,) = assoc.accepted_contexts
        status = send_raw_c_store(
            assoc,
            context,
            CTImageStorage,
            ds.SOPInstanceUID,
            _encoded(ds, implicit_bytes),
        )
    assert status == 0xC000
    assert _object_files(store_server) == before
    found = qido(store_server, "instances", {"StudyInstanceUID": ds.StudyInstanceUID})
    assert found == []


def _send_raw_ct(
    server: RunningServer, sop_instance_uid: str, data_set: bytes, with_get: bool
) -> int:
    """One C-STORE on a CT context; ``with_get`` leaves the association to pynetdicom.

    An association that proposes C-GET is served by pynetdicom's threads, any
    other by the event loop: both answer through ``StoreHandler``.
    """
    contexts = contexts_for([(CTImageStorage, ExplicitVRLittleEndian)])
    if with_get:
        contexts.append(build_context(STUDY_ROOT_GET))
    with associate(server, contexts) as assoc:
        (context,) = [
            accepted
            for accepted in assoc.accepted_contexts
            if accepted.abstract_syntax == CTImageStorage
        ]
        return send_raw_c_store(
            assoc, context, CTImageStorage, sop_instance_uid, data_set
        )


@pytest.mark.server
@pytest.mark.parametrize("with_get", [False, True])
@pytest.mark.parametrize(
    ("keyword", "value"),
    [("SOPClassUID", MRImageStorage), ("SOPInstanceUID", "1.2.3.4")],
)
def test_store_whose_data_set_contradicts_its_command_is_refused_a900_unstored(
    store_server: RunningServer, keyword: str, value: str, with_get: bool
) -> None:
    before = _object_files(store_server)
    ds = make_ct()
    command_instance_uid = ds.SOPInstanceUID
    setattr(ds, keyword, value)
    data_set = _encoded(ds, False)
    status = _send_raw_ct(store_server, command_instance_uid, data_set, with_get)
    assert status == 0xA900
    assert _object_files(store_server) == before
    found = qido(store_server, "instances", {"StudyInstanceUID": ds.StudyInstanceUID})
    assert found == []


@pytest.mark.server
@pytest.mark.parametrize("with_get", [False, True])
def test_store_of_an_undecodable_data_set_is_refused_c000_unstored(
    store_server: RunningServer, with_get: bool
) -> None:
    before = _object_files(store_server)
    garbage = b"not DICOM at all" * 20
    assert _send_raw_ct(store_server, new_uid(), garbage, with_get) == 0xC000
    assert _object_files(store_server) == before


def test_check_context_refuses_a_sop_class_the_context_did_not_negotiate() -> None:
    check_context(CTImageStorage, CTImageStorage)
    with pytest.raises(ContextMismatch, match="negotiated for"):
        check_context(MRImageStorage, CTImageStorage)


def _check_encoding(data_set: bytes, transfer_syntax_uid: str) -> None:
    """Parse the data set as C-STORE files it: under its context's syntax."""
    meta = file_meta(CTImageStorage, "1.2.3.4", transfer_syntax_uid)
    part10 = part10_header(meta) + data_set
    parse_instance(io.BytesIO(part10), len(part10))


def test_ingest_tells_implicit_from_explicit_vr() -> None:
    ds = make_ct()
    _check_encoding(_encoded(ds, False), ExplicitVRLittleEndian)
    _check_encoding(_encoded(ds, True), ImplicitVRLittleEndian)
    _check_encoding(_encoded(ds, False, False), ExplicitVRBigEndian)
    with pytest.raises(InvalidInstance, match="implicit VR"):
        _check_encoding(_encoded(ds, True), ExplicitVRLittleEndian)
    with pytest.raises(InvalidInstance, match="explicit VR"):
        _check_encoding(_encoded(ds, False), ImplicitVRLittleEndian)

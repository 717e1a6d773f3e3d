"""A deterministic synthetic data set: CT studies, an MR series, a multi-frame object.

Every byte follows from the seed: UIDs are hashed from it (``2.25`` UIDs), pixels
come from a seeded generator, and patients carry Chinese names (ISO_IR 192 and
GB18030). The files are written once into a folder with ``manifest.json`` and
reused while the manifest matches the requested spec.

Run alone: ``python -m bench.dataset --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTIFRAME_WORD_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"
# Frame Increment Pointer of the multi-frame object: Page Number Vector.
PAGE_NUMBER_VECTOR_TAG = 0x00182001


@dataclass(frozen=True)
class Spec:
    """What to generate; every field is part of the data set's identity."""

    seed: int = 5
    ct_studies: int = 3
    ct_slices: int = 200
    ct_matrix: int = 512
    mr_slices: int = 40
    mr_matrix: int = 256
    multiframe_frames: int = 50
    multiframe_matrix: int = 256


@dataclass(frozen=True)
class Patient:
    """One synthetic patient."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    charset: str


@dataclass(frozen=True)
class Instance:
    """One generated file and the identifiers a benchmark addresses it by."""

    path: str
    kind: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    size: int
    frames: int


@dataclass(frozen=True)
class Study:
    """One generated study."""

    study_instance_uid: str
    kind: str
    patient_id: str
    patient_name: str
    accession_number: str
    study_date: str
    modality: str
    series_instance_uids: tuple[str, ...]


@dataclass
class DataSet:
    """The generated files under ``root`` and their identifiers."""

    root: Path
    spec: Spec
    studies: list[Study] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Instance]:
        """Instances of one kind: ``ct``, ``mr`` or ``multiframe``."""
        return [i for i in self.instances if i.kind == kind]

    def studies_of_kind(self, kind: str) -> list[Study]:
        """Studies of one kind."""
        return [s for s in self.studies if s.kind == kind]

    def file(self, instance: Instance) -> Path:
        """The absolute path of an instance's file."""
        return self.root / instance.path

    def total_bytes(self, kind: str) -> int:
        """Bytes of all files of one kind."""
        return sum(i.size for i in self.of_kind(kind))


PATIENTS = (
    Patient("BENCH-CT-1", "Wang^Xiaodong=王^小东", "19610412", "M", "ISO_IR 192"),
    Patient("BENCH-CT-2", "Li^Na=李^娜", "19780930", "F", "ISO_IR 192"),
    Patient("BENCH-CT-3", "Zhang^Wei=张^伟", "19851103", "M", "ISO_IR 192"),
)
MR_PATIENT = Patient("BENCH-MR-1", "Chen^Jing=陈^静", "19900217", "F", "GB18030")
MULTIFRAME_PATIENT = Patient(
    "BENCH-MF-1", "Liu^Yang=刘^洋", "19720605", "M", "ISO_IR 192"
)
REFERRING_PHYSICIAN = "Zhao^Min=赵^敏"


def _uid(spec: Spec, *parts: object) -> str:
    # A name-based UUID as a 2.25 UID (PS3.5 B.2): the same parts, the same UID.
    name = "/".join(["dicomvault-bench", str(spec.seed), *(str(p) for p in parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(_uid(Spec(seed=0), "implementation"))
    meta.ImplementationVersionName = "DVBENCH_1"
    return meta


def _patient_module(ds: Dataset, patient: Patient) -> None:
    ds.SpecificCharacterSet = patient.charset
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "BENCH"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex


def _study_module(ds: Dataset, study: Study, description: str) -> None:
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = "083000"
    ds.AccessionNumber = study.accession_number
    ds.StudyID = study.accession_number[-4:]
    ds.StudyDescription = description
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN
    ds.InstitutionName = "Bench Hospital"
    ds.Manufacturer = "dicomvault bench"


def _grayscale_pixels(ds: Dataset, rows: int, columns: int, stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0


class _Phantom:
    """Seeded 16-bit slices: an elliptic body, a moving sphere, noise."""

    def __init__(self, rng: np.random.Generator, matrix: int) -> None:
        self._rng = rng
        axis = np.linspace(-1.0, 1.0, matrix, dtype=np.float32)
        self._x, self._y = np.meshgrid(axis, axis)
        self._body = ((self._x / 0.85) ** 2 + (self._y / 0.65) ** 2) <= 1.0

    def slice(self, position: float) -> bytes:
        """One slice at relative position 0..1 as little-endian uint16 bytes."""
        radius = 0.1 + 0.25 * np.sin(np.pi * position)
        sphere = (self._x - 0.2) ** 2 + self._y**2 <= radius**2
        image = np.where(self._body, 1000, 24).astype(np.uint16)
        image[sphere] = 1300
        image += self._rng.integers(0, 48, size=image.shape, dtype=np.uint16)
        return image.astype("<u2").tobytes()


def _write(ds: Dataset, root: Path, relative: str, kind: str) -> Instance:
    """Save the data set under root and describe the file it became."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return Instance(
        relative,
        kind,
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        str(ds.SOPInstanceUID),
        str(ds.SOPClassUID),
        path.stat().st_size,
        int(ds.get("NumberOfFrames", 1)),
    )


def _ct_study(spec: Spec, root: Path, number: int) -> tuple[Study, list[Instance]]:
    patient = PATIENTS[number % len(PATIENTS)]
    series_uid = _uid(spec, "ct", number, "series")
    study = Study(
        study_instance_uid=_uid(spec, "ct", number, "study"),
        kind="ct",
        patient_id=patient.patient_id,
        patient_name=patient.patient_name,
        accession_number=f"BCT{number + 1:05d}",
        study_date=f"202401{number + 10:02d}",
        modality="CT",
        series_instance_uids=(series_uid,),
    )
    phantom = _Phantom(np.random.default_rng([spec.seed, 1, number]), spec.ct_matrix)
    frame_of_reference = _uid(spec, "ct", number, "frame-of-reference")
    instances = []
    for index in range(spec.ct_slices):
        sop_uid = _uid(spec, "ct", number, "instance", index)
        ds = Dataset()
        ds.file_meta = _file_meta(CT_IMAGE_STORAGE, sop_uid)
        _patient_module(ds, patient)
        _study_module(ds, study, "胸部 CT 平扫 (chest CT)")
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.SeriesDescription = "轴位 1.25 mm"
        ds.BodyPartExamined = "CHEST"
        ds.InstanceNumber = index + 1
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImagePositionPatient = [-250.0, -250.0, -1.25 * index]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceLocation = -1.25 * index
        ds.SliceThickness = 1.25
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.KVP = 120
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 400
        _grayscale_pixels(ds, spec.ct_matrix, spec.ct_matrix, 12)
        ds.PixelData = phantom.slice(index / max(1, spec.ct_slices - 1))
        relative = f"ct{number + 1}/{index + 1:04d}.dcm"
        instances.append(_write(ds, root, relative, "ct"))
    return study, instances


def _mr_study(spec: Spec, root: Path) -> tuple[Study, list[Instance]]:
    series_uid = _uid(spec, "mr", "series")
    study = Study(
        study_instance_uid=_uid(spec, "mr", "study"),
        kind="mr",
        patient_id=MR_PATIENT.patient_id,
        patient_name=MR_PATIENT.patient_name,
        accession_number="BMR00001",
        study_date="20240321",
        modality="MR",
        series_instance_uids=(series_uid,),
    )
    phantom = _Phantom(np.random.default_rng([spec.seed, 2]), spec.mr_matrix)
    instances = []
    for index in range(spec.mr_slices):
        sop_uid = _uid(spec, "mr", "instance", index)
        ds = Dataset()
        ds.file_meta = _file_meta(MR_IMAGE_STORAGE, sop_uid)
        _patient_module(ds, MR_PATIENT)
        _study_module(ds, study, "头颅 MR (brain MR)")
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.SeriesDescription = "T2 轴位"
        ds.InstanceNumber = index + 1
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.MagneticFieldStrength = 3
        ds.EchoTime = 90
        ds.RepetitionTime = 4000
        ds.SliceThickness = 4
        ds.PixelSpacing = [0.9, 0.9]
        _grayscale_pixels(ds, spec.mr_matrix, spec.mr_matrix, 12)
        ds.PixelData = phantom.slice(index / max(1, spec.mr_slices - 1))
        relative = f"mr/{index + 1:04d}.dcm"
        instances.append(_write(ds, root, relative, "mr"))
    return study, instances


def _multiframe_study(spec: Spec, root: Path) -> tuple[Study, list[Instance]]:
    series_uid = _uid(spec, "multiframe", "series")
    study = Study(
        study_instance_uid=_uid(spec, "multiframe", "study"),
        kind="multiframe",
        patient_id=MULTIFRAME_PATIENT.patient_id,
        patient_name=MULTIFRAME_PATIENT.patient_name,
        accession_number="BMF00001",
        study_date="20240402",
        modality="OT",
        series_instance_uids=(series_uid,),
    )
    phantom = _Phantom(np.random.default_rng([spec.seed, 3]), spec.multiframe_matrix)
    count = spec.multiframe_frames
    sop_uid = _uid(spec, "multiframe", "instance")
    ds = Dataset()
    ds.file_meta = _file_meta(MULTIFRAME_WORD_SC_STORAGE, sop_uid)
    _patient_module(ds, MULTIFRAME_PATIENT)
    _study_module(ds, study, "多帧 二次采集 (multi-frame)")
    ds.SOPClassUID = MULTIFRAME_WORD_SC_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.NumberOfFrames = count
    ds.FrameIncrementPointer = PAGE_NUMBER_VECTOR_TAG
    ds.PageNumberVector = list(range(1, count + 1))
    _grayscale_pixels(ds, spec.multiframe_matrix, spec.multiframe_matrix, 12)
    ds.PixelData = b"".join(phantom.slice(i / max(1, count - 1)) for i in range(count))
    relative = "multiframe/0001.dcm"
    instance = _write(ds, root, relative, "multiframe")
    return study, [instance]


def _manifest(data: DataSet) -> dict[str, object]:
    return {
        "format_version": FORMAT_VERSION,
        "spec": asdict(data.spec),
        "studies": [asdict(s) for s in data.studies],
        "instances": [asdict(i) for i in data.instances],
    }


def load(root: Path, spec: Spec) -> DataSet | None:
    """The data set in ``root`` if its manifest matches ``spec``, else None."""
    path = root / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        return None
    if manifest.get("spec") != asdict(spec):
        return None
    studies = [
        Study(**{**s, "series_instance_uids": tuple(s["series_instance_uids"])})
        for s in manifest["studies"]
    ]
    instances = [Instance(**i) for i in manifest["instances"]]
    if not all((root / i.path).exists() for i in instances):
        return None
    return DataSet(root, spec, studies, instances)


def generate(root: Path, spec: Spec) -> DataSet:
    """Write the data set into ``root`` (replacing a stale one) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").unlink(missing_ok=True)
    data = DataSet(root, spec)
    parts = [_ct_study(spec, root, n) for n in range(spec.ct_studies)]
    parts += [_mr_study(spec, root), _multiframe_study(spec, root)]
    for study, instances in parts:
        data.studies.append(study)
        data.instances.extend(instances)
    text = json.dumps(_manifest(data), ensure_ascii=False, indent=1)
    (root / "manifest.json").write_text(text, encoding="utf-8")
    return data


def ensure(root: Path, spec: Spec) -> DataSet:
    """The data set in ``root``, generated first when missing or stale."""
    existing = load(root, spec)
    if existing is not None:
        logger.info("Reusing the data set in %s", root)
        return existing
    logger.info("Generating the data set in %s (seed %d)", root, spec.seed)
    return generate(root, spec)


def main(argv: list[str] | None = None) -> int:
    """Generate (or check) the data set from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="target folder")
    parser.add_argument("--seed", type=int, default=Spec.seed)
    parser.add_argument("--ct-slices", type=int, default=Spec.ct_slices)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = ensure(args.out, Spec(seed=args.seed, ct_slices=args.ct_slices))
    for kind in ("ct", "mr", "multiframe"):
        count = len(data.of_kind(kind))
        megabytes = data.total_bytes(kind) / 1e6
        print(f"{kind:<10} {count:>4} instances {megabytes:8.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

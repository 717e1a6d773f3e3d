"""Tests for key files, key wrapping and KEK rotation."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest

from storage.errors import KekUnavailable, KeyFileError, SealError
from storage.keys import FileKeyProvider, create_dev_key_file, rotate_key_file

KEK = bytes(range(100, 132))
KEK_B64 = base64.b64encode(KEK).decode()
DATA_KEY = bytes(range(32))


def write_key_file(path: Path, text: str) -> Path:
    """Write text as a private key file and return its path."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_dev_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "dev.key"

    create_dev_key_file(path)

    assert path.stat().st_mode & 0o777 == 0o600
    provider = FileKeyProvider.from_file(path)
    assert provider.kek_id.startswith("dev-")
    assert provider.kek_version == 1
    assert provider.versions == [1]


def test_dev_key_files_differ(tmp_path: Path) -> None:
    create_dev_key_file(tmp_path / "a.key")
    create_dev_key_file(tmp_path / "b.key")

    a = FileKeyProvider.from_file(tmp_path / "a.key")
    b = FileKeyProvider.from_file(tmp_path / "b.key")
    with pytest.raises((KekUnavailable, SealError)):
        b.unwrap(a.kek_id, 1, a.wrap(DATA_KEY))


def test_dev_key_file_never_overwrites(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "dev.key", "precious")

    with pytest.raises(KeyFileError, match="already exists"):
        create_dev_key_file(path)

    assert path.read_text() == "precious"


def test_wrap_then_unwrap_returns_the_data_key(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "k", f"id=main\nversion=3\nkey={KEK_B64}\n")
    provider = FileKeyProvider.from_file(path)

    wrapped = provider.wrap(DATA_KEY)

    assert len(wrapped) == 40
    assert DATA_KEY not in wrapped
    assert provider.unwrap("main", 3, wrapped) == DATA_KEY


def test_rotation_wraps_with_new_version_and_unwraps_old(tmp_path: Path) -> None:
    path = tmp_path / "dev.key"
    create_dev_key_file(path)
    before = FileKeyProvider.from_file(path)
    old_wrapped = before.wrap(DATA_KEY)

    assert rotate_key_file(path) == 2

    after = FileKeyProvider.from_file(path)
    assert after.kek_id == before.kek_id
    assert after.kek_version == 2
    assert after.versions == [1, 2]
    assert after.unwrap(after.kek_id, 1, old_wrapped) == DATA_KEY
    new_wrapped = after.wrap(DATA_KEY)
    assert after.unwrap(after.kek_id, 2, new_wrapped) == DATA_KEY
    assert new_wrapped != old_wrapped
    with pytest.raises(SealError):
        after.unwrap(after.kek_id, 1, new_wrapped)
    with pytest.raises(KekUnavailable, match="no version 2"):
        before.unwrap(before.kek_id, 2, new_wrapped)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["dev.key"]


def test_unknown_kek_raises_kek_unavailable_as_key_error() -> None:
    provider = FileKeyProvider("main", {1: KEK})
    wrapped = provider.wrap(DATA_KEY)

    with pytest.raises(KekUnavailable) as caught:
        provider.unwrap("elsewhere", 1, wrapped)
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("Unknown KEK id 'elsewhere'")
    with pytest.raises(KekUnavailable, match="no version 7"):
        provider.unwrap("main", 7, wrapped)


def test_other_kek_material_under_same_name_raises_seal_error() -> None:
    wrapped = FileKeyProvider("main", {1: KEK}).wrap(DATA_KEY)
    impostor = FileKeyProvider("main", {1: bytes(32)})

    with pytest.raises(SealError, match="does not unwrap under KEK 'main' version 1"):
        impostor.unwrap("main", 1, wrapped)


def test_repr_and_logs_never_show_key_material(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "k"
    path.write_text(f"id=main\nversion=1\nkey={KEK_B64}\n")
    path.chmod(0o644)
    caplog.set_level(logging.DEBUG, logger="storage")

    provider = FileKeyProvider.from_file(path)
    rotate_key_file(path)
    create_dev_key_file(tmp_path / "dev.key")

    assert repr(provider) == "FileKeyProvider(kek_id='main', versions=[1])"
    secrets_on_disk = [
        line.removeprefix("key=")
        for p in (path, tmp_path / "dev.key")
        for line in p.read_text().splitlines()
        if line.startswith("key=")
    ]
    assert len(secrets_on_disk) == 3
    for secret in secrets_on_disk:
        assert secret not in caplog.text
        assert secret not in repr(provider)
    assert "0o644" in caplog.text


def test_group_readable_key_file_logs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "k"
    path.write_text(f"id=main\nversion=1\nkey={KEK_B64}\n")
    path.chmod(0o640)

    with caplog.at_level(logging.WARNING, logger="storage.keys"):
        FileKeyProvider.from_file(path)

    assert "chmod 600" in caplog.text


def test_private_key_file_logs_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_key_file(tmp_path / "k", f"id=main\nversion=1\nkey={KEK_B64}\n")

    with caplog.at_level(logging.WARNING, logger="storage.keys"):
        FileKeyProvider.from_file(path)

    assert caplog.records == []


def test_comments_and_blank_lines_are_ignored(tmp_path: Path) -> None:
    text = f"# comment\n\n  id = main  \n# another\nversion=1\n\nkey = {KEK_B64}\n"
    provider = FileKeyProvider.from_file(write_key_file(tmp_path / "k", text))

    assert provider.kek_id == "main"
    wrapped = FileKeyProvider("main", {1: KEK}).wrap(DATA_KEY)
    assert provider.unwrap("main", 1, wrapped) == DATA_KEY


SHORT_B64 = base64.b64encode(bytes(16)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no id= line"),
        ("id=main\n", "has no version= and key= lines"),
        (f"version=1\nkey={KEK_B64}\n", "line 1 has version= before id="),
        ("id=main\nversion=1\n", "line 2 version 1 has no key= line"),
        (f"id=main\nkey={KEK_B64}\n", "line 2 has key= without a version="),
        ("id=main\nversion=1\nnonsense\n", "line 3 has no '='"),
        ("id=main\ncolour=blue\n", "line 2 has unknown name 'colour'"),
        ("id=bad id!\n", "line 1 has invalid KEK id 'bad id!'"),
        ("id=main\nid=main\n", "line 2 has a second or late id= line"),
        ("id=main\nversion=one\n", "line 2 has version 'one'"),
        ("id=main\nversion=0\n", "line 2 has version '0'"),
        ("id=main\nversion=4294967296\n", "line 2 has version '4294967296'"),
        (f"id=main\nversion=1\nkey={KEK_B64}\nversion=1\n", "line 4 repeats version 1"),
        ("id=main\nversion=1\nversion=2\n", "line 3 has version= but version 1"),
        ("id=main\nversion=1\nkey=@@@@\n", "line 3 has a key= value that is not valid"),
        (f"id=main\nversion=1\nkey={SHORT_B64}\n", "line 3 has a key of 16 bytes"),
    ],
)
def test_malformed_key_file_names_line_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_key_file(tmp_path / "bad.key", text)

    with pytest.raises(KeyFileError) as caught:
        FileKeyProvider.from_file(path)

    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert SHORT_B64 not in str(caught.value)


def test_missing_key_file_raises_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="Cannot read key file"):
        FileKeyProvider.from_file(tmp_path / "absent.key")


def test_non_utf8_key_file_raises_key_file_error(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"id=\xff\n")
    os.chmod(path, 0o600)

    with pytest.raises(KeyFileError, match="not UTF-8"):
        FileKeyProvider.from_file(path)


def test_provider_refuses_kek_of_wrong_length() -> None:
    with pytest.raises(KeyFileError, match="has 31 bytes; expected 32"):
        FileKeyProvider("main", {1: bytes(31)})

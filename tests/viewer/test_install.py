"""Installing OHIF from its npm tarball into the folder that /viewer serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.viewer.conftest import write_tarball
from viewer.errors import ViewerInstallError
from viewer.install import (
    BASE_PATH,
    MARKER,
    OHIF_INTEGRITY,
    install_viewer,
    npm_pack,
    read_marker,
    tarball_integrity,
)


def test_install_rebases_configures_and_records(
    tmp_path: Path, fake_tarball: tuple[Path, str]
) -> None:
    tarball, integrity = fake_tarball
    folder = tmp_path / "viewer"

    installed = install_viewer(folder, tarball, integrity)

    assert installed == read_marker(folder.resolve())
    assert installed.base_path == BASE_PATH == "/viewer/"
    index = (folder / "index.html").read_text()
    assert 'src="/viewer/app.bundle.abc.js"' in index
    assert 'window.PUBLIC_URL="/viewer/"' in index
    bundle = (folder / "app.bundle.abc.js").read_bytes()
    assert b'__webpack_require__.p = "/viewer/";' in bundle
    assert (folder / "app.bundle.css").read_text() == (
        "@font-face{src:url(/viewer/f.woff2)}"
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["icons"][0]["src"] == "/viewer/assets/i.png"
    config = (folder / "app-config.js").read_text()
    assert 'routerBasename: "/viewer"' in config
    assert "dataSources: []" not in config
    assert (folder / "assets" / "i.png").is_file()
    assert not (folder / "package.json").exists()


def test_reinstall_replaces_the_earlier_install(
    tmp_path: Path, fake_tarball: tuple[Path, str]
) -> None:
    tarball, integrity = fake_tarball
    folder = tmp_path / "viewer"
    install_viewer(folder, tarball, integrity)
    (folder / "left-over.js").write_text("old")

    install_viewer(folder, tarball, integrity)

    assert not (folder / "left-over.js").exists()
    assert (folder / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["viewer", tarball.name]


def test_install_refuses_a_folder_holding_other_files_before_fetching(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "somebody-elses"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")

    with pytest.raises(ViewerInstallError, match="not empty"):
        install_viewer(folder, tmp_path / "never-read.tgz")

    assert (folder / "notes.txt").read_text() == "keep me"


def test_install_refuses_a_tarball_of_another_version(
    tmp_path: Path, fake_tarball: tuple[Path, str]
) -> None:
    tarball, _ = fake_tarball

    with pytest.raises(ViewerInstallError, match="integrity"):
        install_viewer(tmp_path / "viewer", tarball, OHIF_INTEGRITY)

    assert not (tmp_path / "viewer").exists()


def test_install_refuses_a_tarball_without_the_built_app(tmp_path: Path) -> None:
    tarball = tmp_path / "source-only.tgz"
    write_tarball(tarball, {"package/src/index.js": b"export {};"})

    with pytest.raises(ViewerInstallError, match="index.html"):
        install_viewer(tmp_path / "viewer", tarball, tarball_integrity(tarball))


def test_install_refuses_a_path_leaving_the_folder(tmp_path: Path) -> None:
    tarball = tmp_path / "evil.tgz"
    write_tarball(
        tarball,
        {
            "package/dist/index.html": b'<script>window.PUBLIC_URL="/"</script>',
            "package/dist/../../../escaped.txt": b"outside",
        },
    )

    with pytest.raises(ViewerInstallError, match="unpacked safely"):
        install_viewer(tmp_path / "viewer", tarball, tarball_integrity(tarball))

    assert not list(tmp_path.rglob("escaped.txt"))


def test_install_refuses_a_build_without_webpack_public_path(tmp_path: Path) -> None:
    tarball = tmp_path / "other-build.tgz"
    write_tarball(
        tarball,
        {
            "package/dist/index.html": b'<script>window.PUBLIC_URL="/"</script>',
            "package/dist/main.js": b"import('./chunk.js');",
        },
    )

    with pytest.raises(ViewerInstallError, match="public path"):
        install_viewer(tmp_path / "viewer", tarball, tarball_integrity(tarball))


def test_missing_npm_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ViewerInstallError, match="apt-get install npm"):
        npm_pack(tmp_path, npm=str(tmp_path / "no-such-npm"))


def test_integrity_is_npm_sha512_in_base64(tmp_path: Path) -> None:
    path = tmp_path / "empty.tgz"
    path.write_bytes(b"")

    assert tarball_integrity(path) == (
        "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxv"
        "UdBeoGlODJ6+SfaPg=="
    )

"""Moving the prebuilt OHIF app from the web root to /viewer/."""

from __future__ import annotations

import json

import pytest

from viewer.errors import ViewerInstallError
from viewer.rebase import (
    check_base_path,
    rebase_bundle,
    rebase_index_html,
    rebase_manifest,
    rebase_stylesheet,
)

INDEX = (
    '<html><head><link rel="manifest" href="/manifest.json">'
    '<script src="/app-config.js"></script>'
    '<script>function f(n){return import(n)}window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.1234.js"></script>'
    '<link href="https://cdn.example/x.css" rel="stylesheet">'
    '<script src="//cdn.example/y.js"></script></head></html>'
)


def test_index_html_links_and_public_url_move_under_base_path() -> None:
    html = rebase_index_html(INDEX, "/viewer/")

    assert 'href="/viewer/manifest.json"' in html
    assert 'src="/viewer/app-config.js"' in html
    assert 'src="/viewer/app.bundle.1234.js"' in html
    assert 'window.PUBLIC_URL="/viewer/"' in html
    assert 'href="https://cdn.example/x.css"' in html
    assert 'src="//cdn.example/y.js"' in html


def test_index_html_without_public_url_is_refused() -> None:
    with pytest.raises(ViewerInstallError, match="PUBLIC_URL"):
        rebase_index_html('<script src="/a.js"></script>', "/viewer/")


def test_bundle_public_path_is_set_and_counted() -> None:
    bundle = b'(() => {\n__webpack_require__.p = "/";\n})();\nvar p = "/";'

    rebased, count = rebase_bundle(bundle, "/viewer/")

    assert count == 1
    assert b'__webpack_require__.p = "/viewer/";' in rebased
    assert rebased.endswith(b'var p = "/";')


def test_bundle_without_public_path_is_left_alone() -> None:
    bundle = b"__webpack_require__.p = '';"

    assert rebase_bundle(bundle, "/viewer/") == (bundle, 0)


def test_stylesheet_root_urls_move_and_others_stay() -> None:
    css = (
        "@font-face{src:url(/a.woff2) format('woff2')}"
        ".b{background:url('/b.png')}.c{background:url(\"/c.png\")}"
        ".d{background:url(//cdn.example/d.png)}.e{background:url(data:,x)}"
    )

    rebased = rebase_stylesheet(css, "/viewer/")

    assert "url(/viewer/a.woff2)" in rebased
    assert "url('/viewer/b.png')" in rebased
    assert 'url("/viewer/c.png")' in rebased
    assert "url(//cdn.example/d.png)" in rebased
    assert "url(data:,x)" in rebased


def test_manifest_icons_and_start_url_move_under_base_path() -> None:
    manifest = {
        "name": "Viewer /not/a/link",
        "start_url": "/",
        "icons": [{"src": "/assets/icon.png"}, {"src": "https://cdn.example/i.png"}],
    }

    rebased = json.loads(rebase_manifest(json.dumps(manifest), "/viewer/"))

    assert rebased["name"] == "Viewer /not/a/link"
    assert rebased["start_url"] == "/viewer/"
    assert rebased["icons"] == [
        {"src": "/viewer/assets/icon.png"},
        {"src": "https://cdn.example/i.png"},
    ]


def test_manifest_that_is_not_json_is_refused() -> None:
    with pytest.raises(ViewerInstallError, match="manifest.json"):
        rebase_manifest("{", "/viewer/")


@pytest.mark.parametrize("base_path", ["viewer/", "/viewer", "/", "/a b/", '/a"/'])
def test_base_path_must_be_a_slash_delimited_segment(base_path: str) -> None:
    with pytest.raises(ValueError, match="Base path"):
        check_base_path(base_path)

"""Move OHIF's prebuilt app from the web root to a sub-path such as /viewer/.

The npm package is built for the root: index.html links ``/app.bundle...js``
and sets ``window.PUBLIC_URL = "/"``, stylesheets load fonts from ``url(/...)``,
and webpack's runtime in each entry bundle loads chunks, workers and
WebAssembly from ``__webpack_require__.p = "/"``.
Pure text rewriting; the caller reads and writes the files.
"""

from __future__ import annotations

import json
import re
from typing import Any

from viewer.errors import ViewerInstallError

# A root-relative link in an attribute, not a scheme-relative one ("//host").
_ROOT_LINK = re.compile(r'\b(href|src)="/(?!/)')
# A root-relative url() in a stylesheet, quoted or not.
_CSS_ROOT_URL = re.compile(r"""\burl\((["']?)/(?!/)""")
_PUBLIC_URL = re.compile(r'window\.PUBLIC_URL\s*=\s*"/"')
_WEBPACK_ROOT = b'__webpack_require__.p = "/";'
_MANIFEST_LINKS = frozenset({"src", "start_url", "scope"})


def check_base_path(base_path: str) -> None:
    """Raise ``ValueError`` unless ``base_path`` is like ``/viewer/``."""
    if not re.fullmatch(r"/([A-Za-z0-9._~-]+/)+", base_path):
        raise ValueError(
            f"Base path {base_path!r} must start and end with '/' and hold only "
            "unreserved URL characters, like '/viewer/'"
        )


def rebase_index_html(text: str, base_path: str) -> str:
    """index.html with its root links and PUBLIC_URL moved under ``base_path``."""
    check_base_path(base_path)
    text, count = _PUBLIC_URL.subn(f'window.PUBLIC_URL="{base_path}"', text)
    if count == 0:
        raise ViewerInstallError(
            'index.html sets no window.PUBLIC_URL="/"; this OHIF build is laid '
            "out differently from the one dicomvault knows (@ohif/app 3.13.2)"
        )
    return _ROOT_LINK.sub(lambda match: f'{match[1]}="{base_path}', text)


def rebase_bundle(data: bytes, base_path: str) -> tuple[bytes, int]:
    """A JavaScript bundle with webpack's public path set; also the count changed."""
    check_base_path(base_path)
    replacement = b'__webpack_require__.p = "' + base_path.encode() + b'";'
    count = data.count(_WEBPACK_ROOT)
    return data.replace(_WEBPACK_ROOT, replacement), count


def rebase_stylesheet(text: str, base_path: str) -> str:
    """A stylesheet whose root-relative ``url(/...)`` point under ``base_path``."""
    check_base_path(base_path)
    return _CSS_ROOT_URL.sub(lambda match: f"url({match[1]}{base_path}", text)


def rebase_manifest(text: str, base_path: str) -> str:
    """The web app manifest with its icon and start links under ``base_path``."""
    check_base_path(base_path)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: _link(key, walk(value)) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    def _link(key: str, value: Any) -> Any:
        if key not in _MANIFEST_LINKS or not isinstance(value, str):
            return value
        if value.startswith("/") and not value.startswith("//"):
            return base_path + value[1:]
        return value

    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise ViewerInstallError(f"manifest.json is not JSON: {error}") from None
    return json.dumps(walk(manifest), indent=2, ensure_ascii=False) + "\n"

"""The app-config.js that points OHIF at the archive's DICOMweb root."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from viewer.app_config import DATA_SOURCE_NAME, app_config_js

_NODE = shutil.which("node")


def _evaluate(script: str, origin: str) -> dict[str, Any]:
    """Run the config in Node.js with a stand-in window; return window.config."""
    assert _NODE is not None
    program = (
        f"globalThis.window = {{location: {{origin: {json.dumps(origin)}}}}};\n"
        f"{script}\n"
        "process.stdout.write(JSON.stringify(window.config));\n"
    )
    done = subprocess.run(
        [_NODE, "-e", program], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@pytest.mark.skipif(_NODE is None, reason="Node.js (node) is not installed")
def test_config_points_every_root_at_the_pages_own_origin() -> None:
    config = _evaluate(
        app_config_js("/viewer/", "/dicom-web"), "https://pacs.example:8443"
    )

    assert config["routerBasename"] == "/viewer"
    assert config["defaultDataSourceName"] == DATA_SOURCE_NAME
    [source] = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    assert source["sourceName"] == DATA_SOURCE_NAME
    settings = source["configuration"]
    root = "https://pacs.example:8443/dicom-web"
    assert (settings["qidoRoot"], settings["wadoRoot"], settings["wadoUriRoot"]) == (
        root,
        root,
        root,
    )
    assert settings["imageRendering"] == "wadors"
    assert settings["thumbnailRendering"] == "wadors"
    assert settings["enableStudyLazyLoad"] is True
    assert settings["supportsFuzzyMatching"] is False
    assert settings["dicomUploadEnabled"] is False


def test_config_names_its_paths_as_javascript_strings() -> None:
    script = app_config_js("/viewer/", "/dicom-web")

    assert 'routerBasename: "/viewer"' in script
    assert 'window.location.origin + "/dicom-web"' in script


@pytest.mark.parametrize("dicomweb_path", ["dicom-web", "/dicom-web/", ""])
def test_config_refuses_a_malformed_dicomweb_path(dicomweb_path: str) -> None:
    with pytest.raises(ValueError, match="DICOMweb path"):
        app_config_js("/viewer/", dicomweb_path)

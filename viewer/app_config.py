"""The app-config.js that points OHIF at this archive's DICOMweb service."""

from __future__ import annotations

import json

from viewer.rebase import check_base_path

DATA_SOURCE_NAME = "dicomvault"


def app_config_js(base_path: str, dicomweb_path: str) -> str:
    """OHIF's ``window.config``, with DICOMweb on the page's own origin.

    The roots are computed in the browser from ``window.location.origin``, so
    the same file works under any host name, port or proxy that keeps paths.
    """
    check_base_path(base_path)
    if not dicomweb_path.startswith("/") or dicomweb_path.endswith("/"):
        raise ValueError(
            f"DICOMweb path {dicomweb_path!r} must start with '/' and not end "
            "with one, like '/dicom-web'"
        )
    router_basename = json.dumps(base_path.rstrip("/"))
    return f"""\
// Written by `dicomvault install-viewer`; reinstalling overwrites it.
// The viewer and DICOMweb share one origin, so browsers need no CORS set-up.
(function () {{
  var dicomweb = window.location.origin + {json.dumps(dicomweb_path)};
  window.config = {{
    routerBasename: {router_basename},
    showStudyList: true,
    extensions: [],
    modes: [],
    customizationService: {{}},
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    defaultDataSourceName: {json.dumps(DATA_SOURCE_NAME)},
    dataSources: [
      {{
        namespace: "@ohif/extension-default.dataSourcesModule.dicomweb",
        sourceName: {json.dumps(DATA_SOURCE_NAME)},
        configuration: {{
          friendlyName: "dicomvault",
          name: {json.dumps(DATA_SOURCE_NAME)},
          qidoRoot: dicomweb,
          wadoRoot: dicomweb,
          wadoUriRoot: dicomweb,
          qidoSupportsIncludeField: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          imageRendering: "wadors",
          thumbnailRendering: "wadors",
          enableStudyLazyLoad: true,
          staticWado: false,
          bulkDataURI: {{ enabled: true }},
          dicomUploadEnabled: false,
          omitQuotationForMultipartRequest: true,
        }},
      }},
    ],
  }};
}})();
"""

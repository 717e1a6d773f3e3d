"""The ``dicomvault`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from dicomvault.settings import SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicomvault", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the archive")
    serve.add_argument("--data-dir", type=Path, help="env DICOMVAULT_DATA_DIR")
    serve.add_argument("--host", help="env DICOMVAULT_HOST")
    serve.add_argument("--http-port", type=int, help="env DICOMVAULT_HTTP_PORT")
    serve.add_argument("--dimse-port", type=int, help="env DICOMVAULT_DIMSE_PORT")
    serve.add_argument("--ae-title", help="env DICOMVAULT_AE_TITLE")
    serve.add_argument(
        "--workers", type=int, help="server processes; env DICOMVAULT_WORKERS"
    )
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")
    install = commands.add_parser(
        "install-viewer", help="install the OHIF web viewer served at /viewer (npm)"
    )
    install.add_argument("--viewer-dir", type=Path, help="env DICOMVAULT_VIEWER_DIR")
    install.add_argument(
        "--tarball", type=Path, help="a file from `npm pack @ohif/app@VERSION`"
    )
    install.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")
    return parser


def _install_viewer(args: argparse.Namespace) -> int:
    from viewer.errors import ViewerInstallError
    from viewer.install import install_viewer

    try:
        settings = load_settings(viewer_dir=args.viewer_dir)
        installed = install_viewer(settings.resolved_viewer_dir, args.tarball)
    except (SettingsError, ViewerInstallError) as error:
        print(f"dicomvault: {error}", file=sys.stderr)
        return 2
    print(
        f"{installed.package} {installed.version} installed in {installed.folder}; "
        f"`dicomvault serve` shows it at {installed.base_path}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "install-viewer":
        return _install_viewer(args)
    try:
        settings = load_settings(
            data_dir=args.data_dir,
            host=args.host,
            http_port=args.http_port,
            dimse_port=args.dimse_port,
            ae_title=args.ae_title,
            workers=getattr(args, "workers", None),
        )
    except SettingsError as error:
        print(f"dicomvault: {error}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from dicomvault.workers import supervise

        return supervise(settings, args.log_level.upper())
    from dicomvault.server import run

    try:
        import uvloop
    except ImportError:
        # uvloop is optional; the standard loop works, only slower.
        asyncio.run(run(settings))
    else:
        uvloop.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

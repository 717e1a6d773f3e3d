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
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(
            data_dir=args.data_dir,
            host=args.host,
            http_port=args.http_port,
            dimse_port=args.dimse_port,
            ae_title=args.ae_title,
        )
    except SettingsError as error:
        print(f"dicomvault: {error}", file=sys.stderr)
        return 2
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

"""Settings read once from ``DICOMVAULT_*`` variables and the command line."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from archive.charset import DEFINED_TERMS, normalize_term


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


class Secret(str):
    """A string whose repr hides its value (database URLs carry passwords)."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one dicomvault process."""

    data_dir: Path = field(
        default=Path("dicomvault-data"),
        metadata={"doc": "Folder for the embedded PostgreSQL, the store and the key"},
    )
    host: str = field(default="127.0.0.1", metadata={"doc": "Address to listen on"})
    http_port: int = field(default=8080, metadata={"doc": "HTTP port (DICOMweb)"})
    dimse_port: int = field(default=11112, metadata={"doc": "DIMSE port, 0 = off"})
    ae_title: str = field(default="DICOMVAULT", metadata={"doc": "Our AE title"})
    database_url: Secret | None = field(
        default=None,
        metadata={"doc": "External PostgreSQL URL; unset = embedded pgserver"},
    )
    key_file: Path | None = field(
        default=None,
        metadata={"doc": "Key-encryption key file; unset = <data_dir>/dev-kek.key"},
    )
    store_dir: Path | None = field(
        default=None,
        metadata={"doc": "Filesystem object store; unset = <data_dir>/objects"},
    )
    s3_endpoint: str | None = field(
        default=None, metadata={"doc": "S3/MinIO endpoint host:port; set = use S3"}
    )
    s3_bucket: str = field(default="dicomvault", metadata={"doc": "S3 bucket name"})
    s3_access_key: Secret | None = field(default=None, metadata={"doc": "S3 key"})
    s3_secret_key: Secret | None = field(default=None, metadata={"doc": "S3 secret"})
    s3_secure: bool = field(default=False, metadata={"doc": "Use HTTPS for S3"})
    duplicate_policy: str = field(
        default="reject",
        metadata={
            "doc": "Changed content under a known SOP Instance UID: reject|replace"
        },
    )
    db_pool_size: int = field(
        default=10, metadata={"doc": "Index connections (per worker process)"}
    )
    workers: int = field(
        default=1,
        metadata={
            "doc": "Server processes sharing the HTTP and DIMSE ports; 1 = one process"
        },
    )
    chunk_bytes: int = field(
        default=65536, metadata={"doc": "Plaintext bytes per sealed chunk"}
    )
    qido_max_results: int = field(
        default=10000, metadata={"doc": "Most rows one QIDO response returns"}
    )
    io_threads: int = field(
        default=64,
        metadata={"doc": "Threads for blocking work (parsing, sealing, fsync)"},
    )
    http_read_timeout_s: float = field(
        default=60.0, metadata={"doc": "Seconds a request body may stall"}
    )
    orphan_min_age_s: float = field(
        default=3600.0,
        metadata={"doc": "Age after which an unindexed object counts as orphaned"},
    )
    orphan_sweep_interval_s: float = field(
        default=21600.0, metadata={"doc": "Seconds between orphan sweeps"}
    )
    shutdown_grace_s: float = field(
        default=30.0, metadata={"doc": "Seconds in-flight requests get on stop"}
    )
    cors_allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "Browser origins allowed to call DICOMweb; '*' any; empty none"
        },
    )
    dimse_calling_aets: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "Calling AE titles allowed to associate; empty = any"},
    )
    dimse_max_pdu_bytes: int = field(
        # Bounded: no peer makes the archive hold one PDU larger than this.
        default=1 << 20,
        metadata={"doc": "Max PDU we receive; 0 = unlimited"},
    )
    dimse_timeout_s: float = field(
        default=60.0, metadata={"doc": "DIMSE/network inactivity timeout"}
    )
    dimse_max_associations: int = field(
        default=32, metadata={"doc": "Most DIMSE associations served at once"}
    )
    dimse_peers: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "C-MOVE destinations AE_TITLE@host:port; the admin API adds"},
    )
    charset_fallbacks: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "SOURCE=TERM: how text a sender mislabels is read; SOURCE is a "
            "calling AE title or * (any other, DICOMweb too)"
        },
    )
    viewer_dir: Path | None = field(
        default=None,
        metadata={
            "doc": "Served at /viewer; unset = <sys.prefix>/share/dicomvault/viewer"
        },
    )

    @property
    def charset_fallback_rules(self) -> dict[str, str]:
        """charset_fallbacks as a mapping of source to defined term."""
        rules: dict[str, str] = {}
        for rule in self.charset_fallbacks:
            source, _, term = rule.partition("=")
            rules[source.strip()] = normalize_term(term)
        return rules

    @property
    def resolved_key_file(self) -> Path:
        """The key file in use: the configured one or the development default."""
        return self.key_file or self.data_dir / "dev-kek.key"

    @property
    def resolved_store_dir(self) -> Path:
        """The filesystem store folder in use."""
        return self.store_dir or self.data_dir / "objects"

    @property
    def resolved_viewer_dir(self) -> Path:
        """The viewer folder in use: the configured one or this installation's."""
        return self.viewer_dir or Path(sys.prefix) / "share" / "dicomvault" / "viewer"


ENV_PREFIX = "DICOMVAULT_"
_DUPLICATE_POLICIES = ("reject", "replace")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
_PEER = re.compile(r"^[^@\\]{1,16}@[A-Za-z0-9._:\-\[\]%]+:[0-9]{1,5}$")


def _convert(name: str, annotation: str, raw: str) -> Any:
    text = raw.strip()
    if annotation.startswith("int"):
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if annotation.startswith("float"):
        try:
            return float(text)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if annotation.startswith("bool"):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if annotation.startswith("Path"):
        return Path(text) if text else None
    if annotation.startswith("Secret"):
        return Secret(text) if text else None
    if annotation.startswith("tuple"):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build settings from the environment, then apply explicit overrides.

    Overrides with the value ``None`` are ignored, so unset command-line options
    leave the environment's value in place.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for item in fields(Settings):
        key = ENV_PREFIX + item.name.upper()
        if key in env:
            values[item.name] = _convert(key, str(item.type), env[key])
    settings = replace(Settings(), **values)
    settings = replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    for name in ("http_port", "dimse_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise SettingsError(f"{name} must be 0..65535, got {port!r}")
    if not 0 < len(settings.ae_title.strip()) <= 16:
        raise SettingsError(
            f"ae_title must be 1..16 characters, got {settings.ae_title!r}"
        )
    _check_dimse(settings)
    _check_charset_fallbacks(settings)
    for origin in settings.cors_allowed_origins:
        if origin != "*" and _ORIGIN.match(origin) is None:
            raise SettingsError(
                f"cors_allowed_origins holds {origin!r}, expected '*' or an origin "
                "such as 'https://viewer.example.org:8443' (no path)"
            )
    if settings.duplicate_policy not in _DUPLICATE_POLICIES:
        raise SettingsError(
            f"duplicate_policy must be one of {_DUPLICATE_POLICIES}, "
            f"got {settings.duplicate_policy!r}"
        )
    if settings.chunk_bytes < 4096 or settings.chunk_bytes > 16 * 1024 * 1024:
        raise SettingsError(
            f"chunk_bytes must be 4096..16777216, got {settings.chunk_bytes!r}"
        )
    if settings.io_threads < 1:
        raise SettingsError(
            f"io_threads must be at least 1, got {settings.io_threads!r}"
        )
    if not 1 <= settings.workers <= 64:
        raise SettingsError(f"workers must be 1..64, got {settings.workers!r}")
    if settings.workers > 1 and settings.http_port == 0:
        raise SettingsError(
            "workers > 1 needs a fixed http_port: the processes share one port"
        )
    if settings.db_pool_size < 1:
        raise SettingsError(
            f"db_pool_size must be at least 1, got {settings.db_pool_size!r}"
        )
    resolved = settings.data_dir.resolve()
    under_root = resolved == Path("/root") or Path("/root") in resolved.parents
    if under_root and settings.database_url is None:
        raise SettingsError(
            f"data_dir {str(settings.data_dir)!r} is under /root: the embedded "
            "PostgreSQL runs as another user and cannot reach it; choose a folder "
            "outside /root or set DICOMVAULT_DATABASE_URL"
        )


def _check_dimse(settings: Settings) -> None:
    if settings.dimse_max_pdu_bytes != 0 and not (
        4096 <= settings.dimse_max_pdu_bytes <= 0xFFFFFFFF
    ):
        raise SettingsError(
            "dimse_max_pdu_bytes must be 0 (unlimited) or 4096..4294967295, "
            f"got {settings.dimse_max_pdu_bytes!r}"
        )
    if settings.dimse_timeout_s <= 0:
        raise SettingsError(
            f"dimse_timeout_s must be above 0, got {settings.dimse_timeout_s!r}"
        )
    if settings.dimse_max_associations < 1:
        raise SettingsError(
            "dimse_max_associations must be at least 1, "
            f"got {settings.dimse_max_associations!r}"
        )
    for title in settings.dimse_calling_aets:
        if not 0 < len(title) <= 16 or "\\" in title:
            raise SettingsError(
                f"dimse_calling_aets holds {title!r}, not an AE title of 1..16 "
                "characters without backslash"
            )
    for peer in settings.dimse_peers:
        if _PEER.match(peer) is None:
            raise SettingsError(
                f"dimse_peers holds {peer!r}, expected AE_TITLE@host:port"
            )


def _check_charset_fallbacks(settings: Settings) -> None:
    for rule in settings.charset_fallbacks:
        source, equals, term = rule.partition("=")
        if not equals or not 0 < len(source.strip()) <= 16:
            raise SettingsError(
                f"charset_fallbacks holds {rule!r}, expected AE_TITLE=TERM or *=TERM"
            )
        if normalize_term(term) not in DEFINED_TERMS or not term.strip():
            raise SettingsError(
                f"charset_fallbacks holds {rule!r}: {term.strip()!r} is not a "
                "Specific Character Set defined term (e.g. GB18030, GBK, ISO_IR 100)"
            )

"""DIMSE peers known by AE title: the index table and the configured ones.

C-MOVE names its destination by AE title only (PS3.4 C.4.2.1.4.1); the
archive keeps the host and port of each in the ``dimse_peer`` table so that
every node resolves the same title to the same place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from archive.errors import ArchiveError
from archive.index import Index

MAX_AE_TITLE_LENGTH = 16
MAX_HOST_LENGTH = 253
# PS3.5 6.2, VR AE: default repertoire without backslash or control characters.
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")
_HOST = re.compile(r"[A-Za-z0-9._:\-\[\]%]{1,253}")
_SETTING = re.compile(r"^\s*(?P<ae>[^@]+)@(?P<host>.+):(?P<port>\d+)\s*$")


class InvalidPeer(ArchiveError):
    """A peer's AE title, host or port cannot be used."""

    status = 0xA900


@dataclass(frozen=True)
class Peer:
    """A DIMSE application entity we can connect to."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class PeerEntry:
    """A peer and where it comes from: ``database`` or ``settings``."""

    peer: Peer
    source: str


def check_ae_title(text: str) -> str:
    """Return the AE title trimmed, or raise ``InvalidPeer``."""
    trimmed = text.strip(" ")
    if not trimmed or _AE_TITLE.fullmatch(trimmed) is None:
        raise InvalidPeer(
            f"AE title {text!r} is not 1 to {MAX_AE_TITLE_LENGTH} printable ASCII "
            "characters without backslash (PS3.5 6.2, VR AE)"
        )
    return trimmed


def make_peer(ae_title: str, host: object, port: object) -> Peer:
    """A checked ``Peer``; raises ``InvalidPeer`` naming the bad field."""
    title = check_ae_title(ae_title)
    if not isinstance(host, str) or _HOST.fullmatch(host) is None:
        raise InvalidPeer(
            f"host {host!r} is not a host name or IP address of at most "
            f"{MAX_HOST_LENGTH} characters"
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidPeer(f"port {port!r} is not a whole number in 1..65535")
    return Peer(title, host, port)


def parse_peer(text: str) -> Peer:
    """A peer written ``AE_TITLE@host:port``, as in the dimse_peers setting."""
    match = _SETTING.match(text)
    if match is None:
        raise InvalidPeer(f"Peer {text!r} is not written AE_TITLE@host:port")
    return make_peer(match["ae"], match["host"].strip("[]"), int(match["port"]))


class PeerDirectory:
    """Look-up and upkeep of the peers; the index table wins over the settings."""

    def __init__(self, index: Index, configured: Iterable[Peer] = ()) -> None:
        self._index = index
        self._configured = {peer.ae_title: peer for peer in configured}

    async def get(self, ae_title: str) -> Peer | None:
        """The peer with this AE title, or None when nobody knows it."""
        title = ae_title.strip(" ")
        async with self._index.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT ae_title, host, port FROM dimse_peer WHERE ae_title = $1",
                title,
            )
        if row is not None:
            return Peer(row["ae_title"], row["host"], row["port"])
        return self._configured.get(title)

    async def entries(self) -> list[PeerEntry]:
        """Every known peer by AE title, database rows first."""
        async with self._index.acquire() as conn:
            rows = await conn.fetch(
                "SELECT ae_title, host, port FROM dimse_peer ORDER BY ae_title"
            )
        found = [
            PeerEntry(Peer(row["ae_title"], row["host"], row["port"]), "database")
            for row in rows
        ]
        stored = {entry.peer.ae_title for entry in found}
        found += [
            PeerEntry(peer, "settings")
            for title, peer in sorted(self._configured.items())
            if title not in stored
        ]
        return found

    async def put(self, peer: Peer) -> bool:
        """Add or change a peer; True when it was new to the table."""
        async with self._index.acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO dimse_peer (ae_title, host, port) VALUES ($1, $2, $3) "
                "ON CONFLICT (ae_title) DO UPDATE SET host = EXCLUDED.host, "
                "port = EXCLUDED.port, updated_at = now() "
                "RETURNING (xmax = 0)",
                peer.ae_title,
                peer.host,
                peer.port,
            )
        return bool(inserted)

    async def delete(self, ae_title: str) -> bool:
        """Remove a peer from the table; False when the table did not hold it."""
        async with self._index.acquire() as conn:
            removed = await conn.fetchval(
                "DELETE FROM dimse_peer WHERE ae_title = $1 RETURNING ae_title",
                ae_title.strip(" "),
            )
        return removed is not None

    def is_configured(self, ae_title: str) -> bool:
        """Whether the settings name this AE title."""
        return ae_title.strip(" ") in self._configured

"""Admin API for DIMSE peers: ``/api/dimse/peers[/{ae_title}]``.

PUT adds or changes one (JSON ``{"ae_title", "host", "port"}``), GET lists
them or shows one, DELETE removes one. Kept in the index database, so every
node sees the same C-MOVE destinations.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from archive.peers import InvalidPeer, Peer, PeerDirectory, PeerEntry, make_peer

logger = logging.getLogger(__name__)

PEERS_PATH = "/api/dimse/peers"


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"status": status, "error": reason}, status_code=status)


def _peer_json(peer: Peer, source: str = "database") -> dict[str, Any]:
    return {
        "ae_title": peer.ae_title,
        "host": peer.host,
        "port": peer.port,
        "source": source,
    }


def _entry_json(entry: PeerEntry) -> dict[str, Any]:
    return _peer_json(entry.peer, entry.source)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidPeer(f"The body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidPeer('The body must be a JSON object {"ae_title", "host", "port"}')
    return body


def peer_routes(peers: PeerDirectory) -> list[Route]:
    """The routes of the peer admin API, bound to one directory."""

    async def list_peers(request: Request) -> Response:
        return JSONResponse([_entry_json(entry) for entry in await peers.entries()])

    async def show_peer(request: Request) -> Response:
        title = request.path_params["ae_title"]
        for entry in await peers.entries():
            if entry.peer.ae_title == title.strip(" "):
                return JSONResponse(_entry_json(entry))
        return _error(404, f"No DIMSE peer with AE title {title!r}")

    async def put_peer(request: Request) -> Response:
        title = request.path_params["ae_title"]
        try:
            body = await _body(request)
            named = body.get("ae_title", title)
            if not isinstance(named, str) or named.strip(" ") != title.strip(" "):
                raise InvalidPeer(
                    f"ae_title {named!r} in the body differs from {title!r} in the path"
                )
            peer = make_peer(title, body.get("host"), body.get("port"))
        except InvalidPeer as error:
            return _error(400, str(error))
        created = await peers.put(peer)
        logger.info(
            "DIMSE peer %s %s (%s:%d)",
            peer.ae_title,
            "added" if created else "changed",
            peer.host,
            peer.port,
        )
        return JSONResponse(_peer_json(peer), status_code=201 if created else 200)

    async def delete_peer(request: Request) -> Response:
        title = request.path_params["ae_title"]
        if await peers.delete(title):
            logger.info("DIMSE peer %s removed", title.strip(" "))
            return Response(status_code=204)
        if peers.is_configured(title):
            return _error(
                409,
                f"DIMSE peer {title!r} comes from the dimse_peers setting; "
                "change the setting to remove it",
            )
        return _error(404, f"No DIMSE peer with AE title {title!r}")

    item = PEERS_PATH + "/{ae_title}"
    return [
        Route(PEERS_PATH, list_peers, methods=["GET"]),
        Route(item, show_peer, methods=["GET"]),
        Route(item, put_peer, methods=["PUT"]),
        Route(item, delete_peer, methods=["DELETE"]),
    ]

"""The DIMSE listener: a pynetdicom AE serving the archive (PS3.7, PS3.8).

The AE runs in pynetdicom's threads, one per association; its handlers hand
the archive work to the server's event loop and wait for it (ARCHITECTURE.md,
"One process, one event loop"). Plain associations (storage, verification,
C-FIND and C-MOVE without extended negotiation) skip pynetdicom:
``dimse.loop_scp`` serves them on the event loop itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from archive.peers import PeerDirectory
from archive.service import Archive
from dimse import _wire as wire
from dimse._bridge import LoopBridge
from dimse._contexts import accepted_contexts, in_requestor_order
from dimse._part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dimse._retrieve import Retriever
from dimse.c_echo import handle_echo
from dimse.c_find import PAGE_SIZE, FindHandler
from dimse.c_get import GetHandler
from dimse.c_move import MoveHandler, MoveService, MoveSourceAE
from dimse.c_store import StoreHandler
from dimse.loop_scp import AssociationGate

logger = logging.getLogger(__name__)

_STOP_POLL_S = 0.1


@dataclass(frozen=True)
class ListenerConfig:
    """Where and how the listener accepts associations."""

    host: str
    port: int
    ae_title: str
    calling_ae_titles: tuple[str, ...] = ()
    max_pdu_bytes: int = 1 << 20
    # Several worker processes listen on one port (SO_REUSEPORT).
    shared_port: bool = False
    timeout_s: float = 60.0
    max_associations: int = 32
    shutdown_grace_s: float = 10.0


def refusal_reason(calling_ae_title: str, allowed: tuple[str, ...]) -> str | None:
    """Why the association policy refuses a caller, or None (PS3.8 9.3.4)."""
    if allowed and calling_ae_title.strip() not in {a.strip() for a in allowed}:
        return "calling AE title not in the allow-list (dimse_calling_aets)"
    return None


def set_no_delay(event: Event) -> None:
    """Turn off Nagle's algorithm on an association's socket (EVT_CONN_OPEN).

    DCMTK and Orthanc acknowledge late; with Nagle on, every message that
    goes out in two writes waits for that acknowledgement (40-60 ms).
    """
    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def prefer_requestor_order(event: Event) -> None:
    """Order this association's transfer syntaxes as the caller did (EVT_REQUESTED)."""
    acceptor = event.assoc.acceptor
    acceptor.supported_contexts = in_requestor_order(
        event.assoc.requestor.requested_contexts, acceptor.supported_contexts
    )


def _peer(event: Event) -> tuple[str, str, int]:
    requestor = event.assoc.requestor
    return requestor.ae_title, requestor.address, requestor.port


def _on_accepted(event: Event) -> None:
    logger.info("Association accepted from %s at %s:%d", *_peer(event))


def _on_released(event: Event) -> None:
    logger.info("Association released by %s at %s:%d", *_peer(event))


def _on_aborted(event: Event) -> None:
    logger.info("Association aborted with %s at %s:%d", *_peer(event))


class _BoundedSocket(AssociationSocket):
    """pynetdicom's association socket, refusing to read an oversized PDU.

    pynetdicom reads whatever PDU length a peer announces before it looks at
    it; this socket reads no more at once than ``limit`` (the Maximum Length
    announced, or the largest association request the gate takes) and ends
    the association instead, so that no peer makes the archive hold more.
    """

    limit = 0  # 0: no limit

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes``; nothing past the limit, which ends the association.

        pynetdicom takes a PDU shorter than announced as the connection
        closing (PS3.8 Evt17) and aborts the association.
        """
        if self.limit and nr_bytes > self.limit:
            logger.warning(
                "A peer announced a %d-byte PDU, over the %d bytes this listener "
                "takes; association aborted",
                nr_bytes,
                self.limit,
            )
            return bytearray()
        return super().recv(nr_bytes)


class _BoundedRequestHandler(RequestHandler):
    """pynetdicom's request handler, with a ``_BoundedSocket`` for the association."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        socket_ = assoc.dul.socket
        if isinstance(socket_, AssociationSocket):
            # pynetdicom builds the socket itself; only its reads change.
            socket_.__class__ = _BoundedSocket
            maximum = int(self.ae.maximum_pdu_size or 0)
            bounded = cast(_BoundedSocket, socket_)
            bounded.limit = max(maximum, wire.MAX_CONTROL_PDU_BYTES) if maximum else 0
        return assoc


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, whose gate may serve a connection itself.

    The gate (``dimse.loop_scp``) takes plain associations to the event
    loop; whatever it leaves goes to pynetdicom as usual.
    """

    gate: AssociationGate | None = None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Offer the connection to the gate, else hand it to pynetdicom."""
        gate = self.gate
        if (
            gate is not None
            and isinstance(request, socket.socket)
            and isinstance(client_address, tuple)
        ):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if gate.take(request, client_address):
                return
        super().process_request_thread(request, client_address)


class SharedPortServer(GatedServer):
    """An association server whose port other worker processes bind too.

    The kernel spreads new connections over the processes (SO_REUSEPORT);
    each association stays with the process that accepted it.
    """

    def server_bind(self) -> None:
        """Set SO_REUSEPORT, then bind as pynetdicom does."""
        assert isinstance(self.socket, socket.socket)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class DimseListener:
    """Starts and stops the AE that serves C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET."""

    def __init__(
        self,
        archive: Archive,
        peers: PeerDirectory,
        config: ListenerConfig,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._config = config
        self._bridge = LoopBridge(loop, config.timeout_s)
        self._archive = archive
        self._peers = peers
        self._server: ThreadedAssociationServer | None = None
        self.ae = self._build_ae()
        self._store = StoreHandler(archive, self._bridge)
        self._retriever = Retriever(archive, self._bridge)
        self._find = FindHandler(archive, self._bridge, config.ae_title, PAGE_SIZE)
        self._gate = AssociationGate(
            self._store,
            self._find,
            MoveService(self._retriever, peers, config.ae_title, config.timeout_s),
            loop,
            max_pdu=config.max_pdu_bytes,
            timeout_s=config.timeout_s,
            max_associations=config.max_associations,
            refuses=lambda title: refusal_reason(title, config.calling_ae_titles)
            is not None,
            others=self._pynetdicom_acceptors,
        )

    @property
    def port(self) -> int:
        """The TCP port the listener is bound to (useful after asking for 0)."""
        if self._server is None:
            raise RuntimeError("The DIMSE listener is not started")
        return int(self._server.server_address[1])

    def _build_ae(self) -> AE:
        config = self._config
        # pynetdicom's own logging would write identifiers: patient data.
        _config.LOG_HANDLER_LEVEL = "none"
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        if logging.getLogger("pynetdicom").level == logging.NOTSET:
            # Its INFO lines repeat ours; keep its warnings and errors.
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        ae = MoveSourceAE(ae_title=config.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.maximum_pdu_size = config.max_pdu_bytes
        ae.acse_timeout = config.timeout_s
        ae.dimse_timeout = config.timeout_s
        ae.network_timeout = config.timeout_s
        ae.connection_timeout = config.timeout_s
        ae.maximum_associations = config.max_associations
        ae.require_calling_aet = list(config.calling_ae_titles)
        for context in accepted_contexts():
            roles: dict[str, Any] = {}
            if context.scp_role_for_caller:
                roles = {"scu_role": True, "scp_role": True}
            ae.add_supported_context(
                context.abstract_syntax, list(context.transfer_syntaxes), **roles
            )
        return ae

    def _handlers(self) -> list[Any]:
        retriever = self._retriever
        return [
            (evt.EVT_CONN_OPEN, set_no_delay),
            (evt.EVT_REQUESTED, prefer_requestor_order),
            (evt.EVT_ACCEPTED, _on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, _on_released),
            (evt.EVT_ABORTED, _on_aborted),
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_C_FIND, self._find),
            (
                evt.EVT_C_MOVE,
                MoveHandler(retriever, self._peers, self._bridge),
            ),
            (evt.EVT_C_GET, GetHandler(retriever)),
        ]

    def _on_rejected(self, event: Event) -> None:
        title, address, port = _peer(event)
        reason = refusal_reason(title, self._config.calling_ae_titles)
        logger.warning(
            "Association refused from %r at %s:%d: %s",
            title,
            address,
            port,
            reason or "see the A-ASSOCIATE-RJ reason (limit, or no usable context)",
        )

    async def start(self) -> None:
        """Bind the port and start accepting associations."""
        config = self._config
        self._server = await asyncio.to_thread(self._serve)
        logger.info(
            "DIMSE listener up: AE %s on %s:%d (calling AE titles: %s)",
            config.ae_title,
            config.host,
            self.port,
            ", ".join(config.calling_ae_titles) or "any",
        )

    def _serve(self) -> ThreadedAssociationServer:
        """What ``AE.start_server(block=False)`` does, with our server class."""
        config = self._config
        server_class = SharedPortServer if config.shared_port else GatedServer
        server = self.ae.make_server(
            (config.host, config.port),
            evt_handlers=self._handlers(),
            server_class=server_class,
            request_handler=_BoundedRequestHandler,
        )
        assert isinstance(server, GatedServer)
        server.gate = self._gate
        # shutdown() takes the server off this list again.
        self.ae._servers.append(server)
        threading.Thread(
            target=server.serve_forever, name="DimseAcceptor", daemon=True
        ).start()
        return server

    def storage_sockets(self) -> list[Any]:
        """Sockets of the storage associations served on the event loop."""
        return self._gate.sockets()

    def _pynetdicom_acceptors(self) -> int:
        return sum(1 for assoc in self.ae.active_associations if assoc.is_acceptor)

    async def stop(self) -> None:
        """Stop accepting, give open associations a grace period, abort the rest."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self._gate.stop_taking()
        # Both kinds of association get their grace period at the same time.
        await asyncio.gather(
            asyncio.to_thread(self._shutdown, server),
            self._gate.close(self._config.shutdown_grace_s),
        )
        logger.info("DIMSE listener stopped")

    def _shutdown(self, server: ThreadedAssociationServer) -> None:
        active = list(server.active_associations)
        server.shutdown()
        deadline = time.monotonic() + self._config.shutdown_grace_s
        while time.monotonic() < deadline and any(a.is_alive() for a in active):
            time.sleep(_STOP_POLL_S)
        for assoc in active:
            if assoc.is_alive():
                logger.warning(
                    "Aborting association with %s on shutdown", assoc.requestor.ae_title
                )
                assoc.abort()

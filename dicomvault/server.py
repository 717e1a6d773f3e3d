"""One dicomvault process: settings in, index and store up, front-ends served."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from admin.health import health_routes
from admin.peers import peer_routes
from archive.errors import ArchiveError
from archive.index import Index
from archive.ingest import DuplicatePolicy, Ingestor
from archive.migrate import apply_migrations, migrations_dir
from archive.peers import PeerDirectory, parse_peer
from archive.records import person_name_columns
from archive.service import Archive
from archive.sweep import sweep_orphans
from dicomvault.embedded_pg import EmbeddedPostgres
from dicomvault.settings import Settings
from dicomweb._cors import cors_middleware
from dicomweb._errors import HTTPProblem, handle_archive_error, handle_problem
from dicomweb.app import dicomweb_routes
from dimse.listener import DimseListener, ListenerConfig
from storage.base import ObjectStore
from storage.errors import StorageError
from storage.filesystem import FilesystemStore
from storage.keys import FileKeyProvider, KeyProvider, create_dev_key_file
from viewer.app import viewer_routes

logger = logging.getLogger(__name__)


class _Deferred:
    """An ASGI app that answers 503 until the real one is set."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"2"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"error": "starting"}'})


def load_keys(settings: Settings) -> KeyProvider:
    """The key-encryption key: the configured file, or a generated dev key."""
    path = settings.resolved_key_file
    if settings.key_file is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_dev_key_file(path)
    if settings.key_file is None:
        logger.warning(
            "USING A DEVELOPMENT KEY at %s: objects are encrypted with a key that "
            "lives beside them. Set DICOMVAULT_KEY_FILE to the hospital's key "
            "(or its key provider) before storing real patient data",
            path,
        )
    return FileKeyProvider.from_file(path)


def build_store(settings: Settings) -> ObjectStore:
    """The object store: S3 when an endpoint is set, else a folder."""
    if settings.s3_endpoint:
        from storage.s3 import S3Store

        store = S3Store(
            settings.s3_endpoint,
            str(settings.s3_access_key or ""),
            str(settings.s3_secret_key or ""),
            settings.s3_bucket,
            secure=settings.s3_secure,
        )
        store.ensure_bucket()
        return store
    folder = settings.resolved_store_dir
    folder.mkdir(parents=True, exist_ok=True)
    return FilesystemStore(folder)


@dataclass
class Runtime:
    """What the process started, so that stopping can undo it in order."""

    settings: Settings
    embedded: EmbeddedPostgres | None = None
    index: Index | None = None
    archive: Archive | None = None
    store: ObjectStore | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def start_archive(self) -> Archive:
        """Start PostgreSQL (embedded unless a URL is set), migrate, open stores."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = str(settings.database_url) if settings.database_url else None
        if url is None:
            self.embedded = EmbeddedPostgres(settings.data_dir / "pg")
            url = await asyncio.to_thread(self.embedded.start)
        self.index = await Index.connect(url, settings.db_pool_size)
        async with self.index.acquire() as conn:
            await apply_migrations(conn, migrations_dir())
        filled = await self.index.backfill_person_names(person_name_columns)
        if filled:
            logger.info("Filled fuzzy matching columns of %d older studies", filled)
        store = self.store = await asyncio.to_thread(build_store, settings)
        keys = await asyncio.to_thread(load_keys, settings)
        ingestor = Ingestor(
            self.index,
            store,
            keys,
            chunk_bytes=settings.chunk_bytes,
            duplicate_policy=DuplicatePolicy(settings.duplicate_policy),
            charset_fallbacks=settings.charset_fallback_rules,
        )
        self.archive = Archive(self.index, store, keys, ingestor)
        return self.archive

    async def stop(self) -> None:
        """Close front-ends' resources, the pool, then the embedded server."""
        for closer in reversed(self.closers):
            await closer()
        if self.index is not None:
            await self.index.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def build_app(runtime: Runtime, deferred: _Deferred) -> Starlette:
    """The HTTP application: health routes at once, the rest once ready."""

    async def ready() -> bool:
        # Ready once the routes are mounted, not merely once the archive is up.
        if runtime.archive is None or deferred.app is None:
            return False
        return await runtime.archive.ready()

    viewer = viewer_routes(runtime.settings.resolved_viewer_dir)
    return Starlette(routes=[*health_routes(ready), *viewer, Mount("/", app=deferred)])


def dicomweb_app(
    archive: Archive, settings: Settings, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The DICOMweb application bound to a ready Archive (plus admin routes)."""
    handlers: dict[Any, Any] = {
        ArchiveError: handle_archive_error,
        HTTPProblem: handle_problem,
    }
    return Starlette(
        routes=[*extra_routes, *dicomweb_routes(archive, settings.qido_max_results)],
        exception_handlers=handlers,
        middleware=cors_middleware(settings.cors_allowed_origins),
    )


async def start_dimse(
    runtime: Runtime, archive: Archive, peers: PeerDirectory
) -> DimseListener | None:
    """Start the DIMSE listener on this loop unless dimse_port is 0."""
    settings = runtime.settings
    if settings.dimse_port == 0:
        return None
    config = ListenerConfig(
        host=settings.host,
        port=settings.dimse_port,
        ae_title=settings.ae_title,
        calling_ae_titles=settings.dimse_calling_aets,
        max_pdu_bytes=settings.dimse_max_pdu_bytes,
        timeout_s=settings.dimse_timeout_s,
        max_associations=settings.dimse_max_associations,
        shutdown_grace_s=settings.shutdown_grace_s,
        shared_port=settings.workers > 1,
    )
    listener = DimseListener(archive, peers, config, asyncio.get_running_loop())
    await listener.start()
    runtime.closers.append(listener.stop)
    return listener


async def sweep_periodically(runtime: Runtime, settings: Settings) -> None:
    """Remove orphaned objects now and then (archive/sweep.py)."""
    assert runtime.index is not None and runtime.store is not None
    while True:
        try:
            await sweep_orphans(runtime.index, runtime.store, settings.orphan_min_age_s)
        except (OSError, StorageError, asyncpg.PostgresError):
            # The next pass retries; a failed sweep loses nothing.
            logger.exception("Orphan sweep failed")
        await asyncio.sleep(settings.orphan_sweep_interval_s)


def shared_http_socket(settings: Settings) -> socket.socket:
    """The HTTP port, bound so that the other worker processes can bind it too."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((settings.host, settings.http_port))
    return sock


async def run(
    settings: Settings, started: asyncio.Event | None = None, worker: int = 0
) -> None:
    """Serve until SIGINT/SIGTERM, then drain and stop cleanly.

    With ``settings.workers`` above 1 this is one of several worker processes
    (dicomvault/workers.py): the ports are shared, the HTTP port is bound only
    once the archive is ready (so no connection lands on a worker still
    starting), and only worker 0 runs the orphan sweep.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Many slow fsyncs overlap only when there are threads enough to wait in.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=settings.io_threads))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime = Runtime(settings)
    deferred = _Deferred()
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.http_port}"]
    shared = shared_http_socket(settings) if settings.workers > 1 else None
    if shared is not None:
        config.bind = [f"fd://{shared.fileno()}"]
    config.graceful_timeout = settings.shutdown_grace_s
    # A client that stops sending mid-request must not hold its slot for ever.
    config.read_timeout = int(settings.http_read_timeout_s)
    config.accesslog = logging.getLogger("dicomvault.access")
    config.errorlog = logging.getLogger("dicomvault.http")

    def serve_http() -> asyncio.Task[None]:
        app = build_app(runtime, deferred)
        return asyncio.create_task(
            # Hypercorn's type for the trigger is narrower than what it accepts.
            hypercorn_serve(
                app, config, shutdown_trigger=stop.wait  # type: ignore[arg-type]
            )
        )

    server = None if settings.workers > 1 else serve_http()
    sweeper: asyncio.Task[None] | None = None
    try:
        archive = await runtime.start_archive()
        assert runtime.index is not None
        peers = PeerDirectory(
            runtime.index, [parse_peer(text) for text in settings.dimse_peers]
        )
        await start_dimse(runtime, archive, peers)
        deferred.app = dicomweb_app(archive, settings, peer_routes(peers))
        if server is None:
            server = serve_http()
        # Start-up objects live as long as the process: keep them out of the
        # collector's full passes, which otherwise stall requests for ~25 ms.
        gc.collect()
        gc.freeze()
        logger.info(
            "dicomvault ready: HTTP %s:%d, DICOMweb at /dicom-web%s",
            settings.host,
            settings.http_port,
            f" (worker {worker} of {settings.workers})" if settings.workers > 1 else "",
        )
        if started is not None:
            started.set()
        if worker == 0:
            sweeper = asyncio.create_task(sweep_periodically(runtime, settings))
        await server
    finally:
        stop.set()
        if sweeper is not None:
            sweeper.cancel()
        if server is not None and not server.done():
            await server
        await runtime.stop()
        if shared is not None:
            # Hypercorn closes the descriptor it served on; else close it here.
            shared.detach() if server is not None else shared.close()
        logger.info("dicomvault stopped")

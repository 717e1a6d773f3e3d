"""An embedded PostgreSQL (pgserver) with the schema, for tests of the index."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from archive.index import Index
from archive.migrate import apply_migrations, migrations_dir
from dicomvault.embedded_pg import EmbeddedPostgres


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    postgres = EmbeddedPostgres(Path(tmp_path_factory.mktemp("index")) / "pgdata")
    url = postgres.start()
    yield url
    postgres.stop()


@pytest.fixture
async def index(database_url: str) -> AsyncIterator[Index]:
    opened = await Index.connect(database_url, pool_size=12)
    async with opened.acquire() as conn:
        await apply_migrations(conn, migrations_dir())
    yield opened
    await opened.close()

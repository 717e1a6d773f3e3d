"""Apply the numbered SQL files of migrations/ that the index has not seen yet."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same on every node.
MIGRATION_LOCK_ID = 0x44564D47
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations_dir() -> Path:
    """Find migrations/: beside the source tree, or where pip installed it."""
    candidates = [
        Path(__file__).resolve().parent.parent / "migrations",
        Path(sys.prefix) / "share" / "dicomvault" / "migrations",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"No migrations folder in any of {candidates!r}")


def migration_files(folder: Path) -> list[tuple[int, Path]]:
    """List (number, path) of the migration files in order; refuse stray names."""
    found: list[tuple[int, Path]] = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(
                f"Migration file {path.name!r} does not follow NNNN_name.sql"
            )
        found.append((int(match.group(1)), path))
    numbers = [number for number, _ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"Two migration files share a number in {folder}")
    return found


async def apply_migrations(conn: asyncpg.Connection, folder: Path) -> list[int]:
    """Apply missing migrations under an advisory lock; return those applied."""
    applied: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migration ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch("SELECT version FROM schema_migration")
        done = {row["version"] for row in rows}
        for number, path in migration_files(folder):
            if number in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migration (version, name) VALUES ($1, $2)",
                    number,
                    path.name,
                )
            logger.info("Applied migration %s", path.name)
            applied.append(number)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied

"""``python -m shared.migrate``: create the database if needed and apply pending migrations."""

from __future__ import annotations

import asyncio

from shared.db import migrate_dsn
from shared.logging import configure_logging
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("migrate", settings.log_level)
    applied = asyncio.run(migrate_dsn(settings.database_url))
    print(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")


if __name__ == "__main__":
    main()

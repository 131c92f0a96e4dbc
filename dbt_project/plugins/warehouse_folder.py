"""A dbt-duckdb plugin that creates the warehouse file's folder before DuckDB opens it.

DuckDB creates a missing database file but not a missing folder, and the folder (``<data>/warehouse``) does not
exist until the first dbt run: without this, ``dbt build`` on a fresh data root would fail to connect.
"""

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.plugins import BasePlugin


class Plugin(BasePlugin):
    def update_connection_config(self, creds: DuckDBCredentials, config: dict[str, Any]) -> None:
        if creds.path and creds.path != ":memory:" and "://" not in creds.path:
            Path(creds.path).parent.mkdir(parents=True, exist_ok=True)

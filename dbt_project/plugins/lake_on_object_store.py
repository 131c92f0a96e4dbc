"""A dbt-duckdb plugin that lets DuckDB read a lake on an object store (``PLATFORM_LAKE_ROOT=s3://bucket/lake``).

DuckDB reads ``s3://`` through its httpfs extension, which it would download at run time (and which has no build on
PyPI for the DuckDB this project runs). Instead, the connection is given the platform's own S3 client, pyarrow's,
as an fsspec file system: the same client, reached through the same AWS variables, as every other reader of the
lake (``dagster_project.settings.object_store``). A local lake needs nothing, and gets nothing.
"""

from typing import Any

from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection


class Plugin(BasePlugin):
    def update_connection_config(self, creds: DuckDBCredentials, config: dict[str, Any]) -> None:
        self.lake_root = creds.external_root

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        from spark_jobs.object_store import is_uri  # the standard library only: no cost to a local lake

        lake_root = getattr(self, "lake_root", None) or ""
        if not is_uri(lake_root):
            return  # a local lake: DuckDB reads its own files
        from dagster_project.lake import duckdb_filesystem  # pyarrow, boto3 and the settings: only when needed

        conn.register_filesystem(duckdb_filesystem(lake_root))

"""The lake on an S3-compatible object store, as the jobs reach it.

Every location a job is handed (its store root, an export file, the labels' folder) is a local path or an
object-store URI, ``s3://bucket/key``. Spark reads the same URIs through Hadoop's s3a connector (the session maps
the ``s3`` scheme onto it: ``ObjectStore.spark_conf``), pyarrow through its own S3 file system
(``ObjectStore.filesystem``), delta-rs through its storage options (``ObjectStore.delta_options``): one spelling
of every table's location, whoever reads it. How to reach the store (endpoint, region, keys) is
one ``ObjectStore`` value that the caller hands in, like every other value of this package: nothing here reads
the environment. Left unset, the keys come from where AWS's own clients find them (``AWS_ACCESS_KEY_ID``, a
profile, an instance role).

Object stores have no rename. What the jobs write there is Delta: a commit is one new object of the table's log,
so a reader sees a version whole or not at all. Two writers of one table must not commit at once from two Spark
drivers: Delta's S3 log store checks that a version is absent and then writes it, atomically within one driver
only (delta-rs commits with conditional puts, which the store itself arbitrates). The caller keeps one writing
job per table at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs

# The URI schemes of an S3-compatible store: ``s3`` as the platform writes it, ``s3a`` as Hadoop names its connector.
S3_SCHEMES = ("s3://", "s3a://")
S3A_FILE_SYSTEM = "org.apache.hadoop.fs.s3a.S3AFileSystem"
# Hadoop's class for keys given in its settings (the default chain would also try the environment and the
# instance's role, which a store on another network does not know).
SIMPLE_CREDENTIALS = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"

Location = str | Path


def is_uri(location: Location) -> bool:
    """An object-store URI, as opposed to a local path."""
    return str(location).startswith(S3_SCHEMES)


def join(location: Location, *parts: str) -> Location:
    """``location / part / ...``: a ``Path`` for a local folder, a ``/``-joined URI string for the object store
    (``Path`` would fold the ``//`` of the scheme)."""
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return Path(location).joinpath(*parts)


def bucket_key(location: Location) -> str:
    """``bucket/key`` of an object-store URI: the path pyarrow's S3 file system takes."""
    text = str(location)
    for scheme in S3_SCHEMES:
        if text.startswith(scheme):
            return text.removeprefix(scheme)
    raise ValueError(f"not an object-store URI: {text}")


@dataclass(frozen=True)
class ObjectStore:
    """How to reach an S3-compatible store: AWS itself (no endpoint), or a server of its own (MinIO, Ceph, moto)."""

    endpoint_url: str | None = None  # http://127.0.0.1:9000; None for AWS
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    # Addressing by path (endpoint/bucket/key), which servers of one's own expect; AWS takes either.
    path_style: bool = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ObjectStore:
        """The store as AWS's own clients find it in ``environ`` (the caller's environment: this package reads
        none): ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
        ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``. The same variables configure boto3 (MLflow's
        artifacts), delta-rs and DuckDB's readers, so one set reaches the store from every client."""
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(endpoint_url=endpoint, region=region, access_key_id=environ.get("AWS_ACCESS_KEY_ID") or None,
                   secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY") or None)  # fmt: skip

    @property
    def plain_http(self) -> bool:
        return bool(self.endpoint_url) and str(self.endpoint_url).startswith("http://")

    def spark_conf(self) -> dict[str, str]:
        """Hadoop's s3a settings, as ``spark.hadoop.*`` session settings."""
        prefix = "spark.hadoop.fs.s3a."
        conf = {
            "spark.hadoop.fs.s3.impl": S3A_FILE_SYSTEM,  # s3:// as s3a://: the URIs delta-rs and pyarrow read too
            # VACUUM's START and END commits, which say what it deleted (the maintenance report reads them). Delta
            # leaves them out on S3, whose log store is safe for one writing driver at a time only; that holds for
            # every commit there, VACUUM's no less (see the module's doc).
            "spark.databricks.delta.vacuum.logging.enabled": "true",
            f"{prefix}endpoint.region": self.region,
            f"{prefix}path.style.access": str(self.path_style).lower(),
        }
        if self.endpoint_url:
            conf[f"{prefix}endpoint"] = self.endpoint_url
            conf[f"{prefix}connection.ssl.enabled"] = str(not self.plain_http).lower()
        if self.access_key_id and self.secret_access_key:
            conf |= {f"{prefix}access.key": self.access_key_id, f"{prefix}secret.key": self.secret_access_key,
                     f"{prefix}aws.credentials.provider": SIMPLE_CREDENTIALS}  # fmt: skip
        return conf

    def delta_options(self) -> dict[str, str]:
        """delta-rs's storage options. Its commits are conditional puts (create if absent), so writers of several
        processes need no lock."""
        options = {"AWS_REGION": self.region, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not self.path_style).lower()}
        if self.endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.endpoint_url
            options["AWS_ALLOW_HTTP"] = str(self.plain_http).lower()
        if self.access_key_id and self.secret_access_key:
            options |= {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        return options

    def filesystem(self) -> pafs.S3FileSystem:
        """pyarrow's S3 file system on this store (it reads no endpoint from the environment: it is given here).
        One per store and process: a client keeps its connections for the next request."""
        return _s3_filesystem(self)


@functools.lru_cache(maxsize=8)
def _s3_filesystem(store: ObjectStore) -> pafs.S3FileSystem:
    import pyarrow.fs as pafs

    options: dict = {"region": store.region, "force_virtual_addressing": not store.path_style}
    if store.endpoint_url:
        scheme, _, host = str(store.endpoint_url).partition("://")
        options |= {"endpoint_override": host, "scheme": scheme}
    if store.access_key_id and store.secret_access_key:
        options |= {"access_key": store.access_key_id, "secret_key": store.secret_access_key}
    return pafs.S3FileSystem(**options)


def filesystem_and_path(location: Location, store: ObjectStore | None) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for ``location`` and the path on it: the object store's for a URI (which needs
    ``store``), the local one otherwise."""
    import pyarrow.fs as pafs

    if is_uri(location):
        if store is None:
            raise ValueError(f"{location} is on an object store, and no object store was configured to reach it")
        return store.filesystem(), bucket_key(location)
    return pafs.LocalFileSystem(), str(location)


def location_argument(text: str) -> Location:
    """A command line's location: an ``s3://`` URI as given, else a local path."""
    return text if is_uri(text) else Path(text)


def exists(location: Location, store: ObjectStore | None) -> bool:
    import pyarrow.fs as pafs

    filesystem, path = filesystem_and_path(location, store)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def read_text(location: Location, store: ObjectStore | None) -> str:
    filesystem, path = filesystem_and_path(location, store)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def parquet_schema(location: Location, store: ObjectStore | None):  # -> pyarrow.Schema
    """A Parquet file's schema, with its key-value metadata, read from its footer only."""
    import pyarrow.parquet as pq

    filesystem, path = filesystem_and_path(location, store)
    return pq.read_schema(path, filesystem=filesystem)

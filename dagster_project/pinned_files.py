"""DuckDB's view of a lake on an object store: each file read in the one version first seen, or not at all.

DuckDB reads ``s3://`` here through an fsspec file system (``lake.duckdb_filesystem``; its own httpfs extension would
be downloaded at run time). It asks that file system for a file's size and time when it lists a glob, then opens
the file and reads the footer and the pages by ranges: while a day is rewritten, those requests could each meet
another version, and a footer of one version would be read against the pages of the next. So the first request
about a file pins its version (its ETag), every later request of the same connection asks for exactly that
version (``If-Match``), and the file is read whole in one GET: DuckDB reads one version of each file, whole, or
fails with ``FileChangedWhileRead`` naming the file, never a mix of two. A connection registers its own file
system, so pins last as long as it does (a dbt invocation, one ``WarehouseResource.connect``).

The same holds for listings: a connection sees the files of a folder as it first listed them, in one listing of
everything below it (a glob such as ``date=*/*.parquet`` would otherwise list every day's folder, on every query).
A pinned version never changes, so what was learned of it is kept for the connection: its size and time (DuckDB
asks for them on every query, and dbt's run queries the same staging views for each model and test), and its
bytes, up to ``CACHED_BYTES`` (a day's raw files are small; a glob over a year of them is read once per run).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from fsspec.implementations.arrow import ArrowFile, ArrowFSWrapper

CACHED_BYTES = 512 * 1024**2  # of pinned files' contents, per connection


class FileChangedWhileRead(OSError):
    """A file of the lake was replaced while a connection was reading it: run the read again."""


@dataclass(frozen=True)
class Version:
    etag: str
    size: int
    modified: dt.datetime


class PinnedS3Files(ArrowFSWrapper):
    """pyarrow's S3 client as an fsspec file system (``s3://``) whose files each keep their first-seen version."""

    protocol = "s3"
    cachable = False  # fsspec would hand every connection the same instance, and so the same pins

    def __init__(self, filesystem: Any, client: Any) -> None:
        super().__init__(filesystem)
        self.client = client  # boto3's: pyarrow's client tells no ETag and sends no If-Match
        self.pins: dict[str, Version] = {}
        self.contents: OrderedDict[str, pa.Buffer] = OrderedDict()  # of pinned versions, least recently read first
        self.listings: dict[str, dict[str, dict[str, Any]]] = {}  # folder -> every entry below it, as first listed

    def find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False, **options: Any
    ) -> Any:
        """What is below ``path`` (fsspec's ``find``, which ``glob`` calls), from one listing of everything below it,
        which also pins each file found to the version listed."""
        path = self._strip_protocol(path).rstrip("/")
        if path not in self.listings:
            self.listings[path] = self._list_below(path)
        below = self.listings[path]

        def depth(name: str) -> int:
            return name[len(path) :].strip("/").count("/") + 1

        out = {name: entry for name, entry in below.items()
               if (withdirs or entry["type"] == "file") and (maxdepth is None or depth(name) <= maxdepth)}  # fmt: skip
        if withdirs and below:
            out[path] = _folder(path)
        if not below and self.isfile(path):
            out[path] = self.info(path)
        return {name: out[name] for name in sorted(out)} if detail else sorted(out)

    def _list_below(self, path: str) -> dict[str, dict[str, Any]]:
        bucket, _, prefix = path.partition("/")
        entries: dict[str, dict[str, Any]] = {}
        listing = self.client.get_paginator("list_objects_v2")
        pages = listing.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
        for page in pages:
            for listed in page.get("Contents", []):
                name = f"{bucket}/{listed['Key']}"
                version = self.pins.setdefault(name, Version(listed["ETag"], listed["Size"], listed["LastModified"]))
                entries[name] = {"name": name, "size": version.size, "type": "file", "mtime": version.modified}
                folder = name.rsplit("/", 1)[0]
                while len(folder) > len(path) and folder not in entries:  # the folders between, as S3 has none
                    entries[folder] = _folder(folder)
                    folder = folder.rsplit("/", 1)[0]
        return entries

    def _version(self, path: str) -> Version | None:
        """The pinned version of ``bucket/key``, pinning the current one (a HEAD) if there is none yet; None if it
        is no file."""
        if path in self.pins:
            return self.pins[path]
        from botocore.exceptions import ClientError

        bucket, _, key = path.partition("/")
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None  # a folder (a prefix), or nothing
            raise
        return self.pins.setdefault(path, Version(head["ETag"], head["ContentLength"], head["LastModified"]))

    def info(self, path: str, **options: Any) -> dict[str, Any]:
        pinned = self.pins.get(self._strip_protocol(path))
        if pinned is not None:
            return {"name": self._strip_protocol(path), "size": pinned.size, "type": "file", "mtime": pinned.modified}
        entry = super().info(path, **options)
        if entry.get("type") == "file":
            version = self._version(self._strip_protocol(path))
            if version is not None:
                entry = {**entry, "size": version.size, "mtime": version.modified}
        return entry

    def size(self, path: str) -> int:
        version = self._version(self._strip_protocol(path))
        return version.size if version is not None else super().size(path)

    def modified(self, path: str) -> dt.datetime:
        version = self._version(self._strip_protocol(path))
        return version.modified if version is not None else super().modified(path)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **options: Any) -> Any:
        if mode != "rb":
            return super()._open(path, mode, block_size, **options)
        from botocore.exceptions import ClientError

        version = self._version(path)
        if path in self.contents:
            self.contents.move_to_end(path)
            return ArrowFile(self, pa.BufferReader(self.contents[path]), path, mode, block_size, **options)
        bucket, _, key = path.partition("/")
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, **({"IfMatch": version.etag} if version else {}))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("412", "PreconditionFailed"):
                changed = f"s3://{path} was replaced while it was being read: run the read again"
                raise FileChangedWhileRead(changed) from None
            raise
        with response["Body"] as body:
            whole = pa.py_buffer(body.read())
        self._keep(path, whole)
        return ArrowFile(self, pa.BufferReader(whole), path, mode, block_size, **options)

    def _keep(self, path: str, contents: pa.Buffer) -> None:
        self.contents[path] = contents
        while sum(b.size for b in self.contents.values()) > CACHED_BYTES and len(self.contents) > 1:
            self.contents.popitem(last=False)


def _folder(name: str) -> dict[str, Any]:
    return {"name": name, "size": 0, "type": "directory", "mtime": None}

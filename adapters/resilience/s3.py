"""``S3BlobStore``: claim-check payloads in Amazon S3 or any S3-compatible server (boto3).

Objects under ``prefix`` in ``bucket``::

    blobs/<uid>                     the payload (``uid``: a random id per upload)
    index/<sha256>                  body: the uid holding these bytes (content index)
    refs/<uid>/<ref>.<expiry ms>    one empty object per reference ("none": no expiry)

A payload of at least ``part_size`` bytes is sent as a multipart upload,
``part_size`` bytes per part, so memory stays bounded whatever the payload
(about 2.5x ``part_size`` at peak with boto3's own copies: 19 MiB traced for
the default 8 MiB parts); a smaller one is one ``PutObject``.  The digest is known only at
the end and S3 cannot rename, so the object keeps its upload id and the
small index object maps the digest to it: the same bytes checked in twice
are stored once.  Expiries live in the reference object names, so ``sweep``
and ``expired`` need only listings.

S3 has no multi-object transactions: a ``release`` that drops the last
reference while another process checks in the same bytes can, in a window
of a few requests, delete the payload the new ticket points to (the new
ticket then gets ``PayloadMissing``).  Give such producers distinct payloads,
or use ``ttl`` and ``sweep`` instead of ``release``.  ``sweep`` also aborts
multipart uploads and deletes unreferenced objects older than
``upload_ttl`` (from a writer that died).

boto3 is synchronous; the ``a``-prefixed methods run it in a worker thread.
For direct downloads, :meth:`S3BlobStore.presigned_url` gives S3's own
valet key (a presigned ``GetObject`` URL) instead of ``ClaimCheck.grant``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
from typing import Any

from botocore.exceptions import ClientError

from resilience import _validate
from resilience.claimcheck.errors import PayloadMissing
from resilience.claimcheck.store import DIGEST_ID, BlobWriter, check_commit, live

__all__ = ["S3BlobStore"]

_UID = re.compile(r"[0-9a-f]{32}")
_MIN_PART = 5 * 1024 * 1024  # S3's minimum for every part but the last


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload")


class _S3Writer:
    __slots__ = ("_buffer", "_parts", "_store", "_upload_id", "done", "size", "uid")

    def __init__(self, store: S3BlobStore) -> None:
        self._store = store
        self.uid = secrets.token_hex(16)
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self.size = 0
        self.done = False

    @property
    def key(self) -> str:
        return self._store._blob_key(self.uid)

    def _send_part(self, data: bytes) -> None:
        store = self._store
        if self._upload_id is None:
            reply = store.client.create_multipart_upload(Bucket=store.bucket, Key=self.key)
            self._upload_id = reply["UploadId"]
        number = len(self._parts) + 1
        reply = store.client.upload_part(
            Bucket=store.bucket, Key=self.key, UploadId=self._upload_id,
            PartNumber=number, Body=data,
        )  # fmt: skip
        self._parts.append({"ETag": reply["ETag"], "PartNumber": number})

    def write(self, chunk: bytes) -> None:
        if self.done:
            raise ValueError("write() after commit or abort")
        self._buffer += chunk
        self.size += len(chunk)
        part = self._store.part_size
        while len(self._buffer) >= part:
            with memoryview(self._buffer) as view:
                data = bytes(view[:part])  # one copy: a bytearray slice would make two
            del self._buffer[:part]
            self._send_part(data)

    async def awrite(self, chunk: bytes) -> None:
        await asyncio.to_thread(self.write, chunk)

    def finish(self) -> None:
        """Make ``blobs/<uid>`` exist with every byte written."""
        store = self._store
        if self._upload_id is None:
            store.client.put_object(Bucket=store.bucket, Key=self.key, Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._send_part(bytes(self._buffer))
            store.client.complete_multipart_upload(
                Bucket=store.bucket, Key=self.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )  # fmt: skip
        self._buffer = bytearray()

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self._buffer = bytearray()
        store = self._store
        with contextlib.suppress(Exception):
            if self._upload_id is not None:
                store.client.abort_multipart_upload(
                    Bucket=store.bucket, Key=self.key, UploadId=self._upload_id
                )
            store.client.delete_object(Bucket=store.bucket, Key=self.key)


class _S3Reader:
    __slots__ = ("_body", "_chunk")

    def __init__(self, body: Any, chunk: int) -> None:
        self._body = body
        self._chunk = chunk

    def read_chunk(self) -> bytes:
        if self._body is None:
            return b""
        data: bytes = self._body.read(self._chunk)
        return data

    async def aread_chunk(self) -> bytes:
        return await asyncio.to_thread(self.read_chunk)

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
            self._body = None


class S3BlobStore:
    """Payloads as S3 objects in ``bucket`` through a boto3 S3 ``client``."""

    def __init__(
        self,
        bucket: str,
        client: Any,
        *,
        prefix: str = "claimcheck/",
        part_size: int = 8 * 1024 * 1024,
        chunk_size: int = 1024 * 1024,
        upload_ttl: float = 86400.0,
    ) -> None:
        _validate.non_empty_str(bucket, "bucket")
        for method in ("put_object", "get_object", "upload_part", "list_objects_v2"):
            if not callable(getattr(client, method, None)):
                raise TypeError(f"client must be a boto3 S3 client (no {method}), got {client!r}")
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, got {prefix!r}")
        if type(part_size) is not int or not _MIN_PART <= part_size <= 5 * 1024**3:
            raise ValueError(f"part_size must be an int in [5 MiB, 5 GiB], got {part_size!r}")
        if type(chunk_size) is not int or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if not (
            isinstance(upload_ttl, int | float) and math.isfinite(upload_ttl) and upload_ttl > 0
        ):
            raise ValueError(f"upload_ttl must be a positive number of seconds, got {upload_ttl!r}")
        self.bucket = bucket
        self.client = client
        self.prefix = prefix
        self.part_size = part_size
        self.chunk_size = chunk_size
        self.upload_ttl = float(upload_ttl)

    def _blob_key(self, uid: str) -> str:
        return f"{self.prefix}blobs/{uid}"

    def _index_key(self, digest: str) -> str:
        return f"{self.prefix}index/{digest}"

    def _digest_key(self, uid: str) -> str:
        return f"{self.prefix}digests/{uid}"

    def _refs_prefix(self, uid: str) -> str:
        return f"{self.prefix}refs/{uid}/"

    def _ref_key(self, uid: str, ref: str, expires_at: float | None) -> str:
        exp = "none" if expires_at is None else str(math.ceil(expires_at * 1000))
        return f"{self._refs_prefix(uid)}{ref}.{exp}"

    def _list(self, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(page.get("Contents", []))
        return out

    def _read(self, key: str) -> str:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            return str(body.read(4096).decode("ascii", "replace"))
        finally:
            body.close()

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _refs(self, uid: str) -> dict[str, float | None]:
        refs: dict[str, float | None] = {}
        start = len(self._refs_prefix(uid))
        for item in self._list(self._refs_prefix(uid)):
            ref, _, exp = item["Key"][start:].rpartition(".")
            refs[ref] = None if exp == "none" else int(exp) / 1000
        return refs

    def _delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _delete_payload(self, uid: str) -> bool:
        """Delete the object, its references and its index entry (if it still names it)."""
        existed = self._exists(self._blob_key(uid))
        try:
            digest = self._read(self._digest_key(uid))
        except ClientError as exc:
            if not _missing(exc):
                raise
            digest = ""
        keys = [item["Key"] for item in self._list(self._refs_prefix(uid))]
        self._delete_many([*keys, self._blob_key(uid), self._digest_key(uid)])
        if DIGEST_ID.fullmatch(digest):
            index = self._index_key(digest)
            with contextlib.suppress(ClientError):
                if self._read(index) == uid:
                    self.client.delete_object(Bucket=self.bucket, Key=index)
        return existed

    # -- the protocol -----------------------------------------------------------------------

    def begin(self) -> _S3Writer:
        return _S3Writer(self)

    def commit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        writer = check_commit(writer, _S3Writer, self, digest, size)
        index = self._index_key(digest)
        try:
            existing = self._read(index)
        except ClientError as exc:
            if not _missing(exc):
                raise
            existing = ""
        if _UID.fullmatch(existing):
            # reference first, then check the payload is still there (a racing release)
            ref_key = self._ref_key(existing, ref, expires_at)
            self.client.put_object(Bucket=self.bucket, Key=ref_key, Body=b"")
            if self._exists(self._blob_key(existing)):
                writer.abort()
                return existing
            self.client.delete_object(Bucket=self.bucket, Key=ref_key)
        writer.finish()
        uid = writer.uid
        self.client.put_object(Bucket=self.bucket, Key=self._digest_key(uid), Body=digest.encode())
        self.client.put_object(
            Bucket=self.bucket, Key=self._ref_key(uid, ref, expires_at), Body=b""
        )
        self.client.put_object(Bucket=self.bucket, Key=index, Body=uid.encode())
        writer.done = True
        return uid

    async def acommit(
        self,
        writer: BlobWriter,
        digest: str,
        size: int,
        ref: str,
        expires_at: float | None,
        now: float,
    ) -> str:
        return await asyncio.to_thread(self.commit, writer, digest, size, ref, expires_at, now)

    def reader(self, blob_id: str, start: int = 0, end: int | None = None) -> _S3Reader:
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            raise PayloadMissing(f"no payload {blob_id!r}")
        key = self._blob_key(blob_id)
        try:
            if start <= 0 and end is None:
                reply = self.client.get_object(Bucket=self.bucket, Key=key)
            else:
                size = self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
                first = max(0, min(start, size))
                stop = size if end is None else max(first, min(end, size))
                if stop <= first:
                    return _S3Reader(None, self.chunk_size)
                reply = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={first}-{stop - 1}"
                )
        except ClientError as exc:
            if _missing(exc):
                raise PayloadMissing(f"no payload {blob_id!r}") from None
            raise
        return _S3Reader(reply["Body"], self.chunk_size)

    async def areader(self, blob_id: str, start: int = 0, end: int | None = None) -> _S3Reader:
        return await asyncio.to_thread(self.reader, blob_id, start, end)

    def release(self, blob_id: str, ref: str) -> bool:
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            return False
        refs = self._refs(blob_id)
        if ref in refs:
            self.client.delete_object(
                Bucket=self.bucket, Key=self._ref_key(blob_id, ref, refs.pop(ref))
            )
        elif not refs:
            return False
        if refs or self._refs(blob_id):
            return False
        return self._delete_payload(blob_id)

    async def arelease(self, blob_id: str, ref: str) -> bool:
        return await asyncio.to_thread(self.release, blob_id, ref)

    def delete(self, blob_id: str) -> bool:
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            return False
        return self._delete_payload(blob_id)

    def _all_refs(self) -> dict[str, dict[str, float | None]]:
        found: dict[str, dict[str, float | None]] = {}
        start = len(f"{self.prefix}refs/")
        for item in self._list(f"{self.prefix}refs/"):
            uid, _, name = item["Key"][start:].partition("/")
            ref, _, exp = name.rpartition(".")
            found.setdefault(uid, {})[ref] = None if exp == "none" else int(exp) / 1000
        return found

    def expired(self, now: float) -> list[str]:
        return sorted(
            uid
            for uid, refs in self._all_refs().items()
            if _UID.fullmatch(uid) and not any(live(e, now) for e in refs.values())
        )

    def sweep(self, now: float) -> int:
        removed = 0
        all_refs = self._all_refs()
        for uid, refs in all_refs.items():
            if not _UID.fullmatch(uid):
                continue
            dead = [r for r, e in refs.items() if not live(e, now)]
            if len(dead) == len(refs):
                removed += self._delete_payload(uid)
            elif dead:
                self._delete_many([self._ref_key(uid, r, refs[r]) for r in dead])
        cutoff = now - self.upload_ttl
        start = len(f"{self.prefix}blobs/")
        for item in self._list(f"{self.prefix}blobs/"):
            uid = item["Key"][start:]
            if uid not in all_refs and item["LastModified"].timestamp() < cutoff:
                removed += self._delete_payload(uid)
        reply = self.client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"
        )
        for upload in reply.get("Uploads", []):
            if upload["Initiated"].timestamp() < cutoff:
                with contextlib.suppress(ClientError):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        return removed

    async def asweep(self, now: float) -> int:
        return await asyncio.to_thread(self.sweep, now)

    def presigned_url(self, blob_id: str, ttl: float = 300.0) -> str:
        """S3's own valet key: a presigned ``GetObject`` URL valid for ``ttl`` seconds."""
        if not (isinstance(blob_id, str) and _UID.fullmatch(blob_id)):
            raise PayloadMissing(f"no payload {blob_id!r}")
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._blob_key(blob_id)},
            ExpiresIn=max(1, math.ceil(ttl)),
        )
        return url

    def __repr__(self) -> str:
        return f"S3BlobStore({self.bucket!r}, prefix={self.prefix!r})"

"""S3BlobStore against moto's standalone S3 server on 127.0.0.1 (a real HTTP server, real boto3)."""

from __future__ import annotations

import os
import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from resilience import ClaimCheck, PayloadMissing  # noqa: E402
from resilience.events import EventBus  # noqa: E402
from resilience.s3 import S3BlobStore  # noqa: E402
from resilience.testing import FakeClock  # noqa: E402
from tests.claimcheck_contract import SECRET, check_store_contract  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port, for this module."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client


@pytest.fixture
def bucket(s3: Any) -> str:
    name = "claims-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    return name


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_store_contract(s3: Any, bucket: str) -> None:
    check_store_contract(lambda: S3BlobStore(bucket, s3, chunk_size=4096))


def test_multipart_upload_for_large_payloads(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, s3, part_size=5 * MiB)
    cc = ClaimCheck(store, SECRET, events=EventBus())
    data = os.urandom(12 * MiB)
    env = cc.check_in(iter(data[i : i + MiB] for i in range(0, len(data), MiB)))
    ticket = cc.ticket(env)
    assert ticket is not None
    head = s3.head_object(Bucket=bucket, Key=f"claimcheck/blobs/{ticket.blob_id}")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert cc.redeem(env) == data
    again = cc.check_in(data)  # stored once
    blobs = [k for k in _keys(s3, bucket) if "/blobs/" in k]
    assert blobs == [f"claimcheck/blobs/{ticket.blob_id}"]
    cc.release(env)
    cc.release(again)
    assert _keys(s3, bucket) == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_aborted_multipart_upload_is_cleaned(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, s3, part_size=5 * MiB)
    writer = store.begin()
    writer.write(b"x" * (6 * MiB))
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    writer.abort()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # an upload whose writer died is aborted by sweep once older than upload_ttl
    dead = store.begin()
    dead.write(b"y" * (6 * MiB))
    assert store.sweep(now=0.0) == 0
    assert store.sweep(now=10**10) == 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_presigned_url_reads_the_payload(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, s3)
    cc = ClaimCheck(store, SECRET, threshold=1, events=EventBus())
    env = cc.check_in(b"presigned payload")
    ticket = cc.ticket(env)
    assert ticket is not None
    url = store.presigned_url(ticket.blob_id, ttl=60)
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"presigned payload"
    with pytest.raises(PayloadMissing):
        store.presigned_url("../other")


async def test_async_methods(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, s3, part_size=5 * MiB)
    clock = FakeClock(10**6)
    cc = ClaimCheck(store, SECRET, ttl=5.0, clock=clock, events=EventBus())
    data = os.urandom(6 * MiB)
    env = await cc.acheck_in(data)
    assert await cc.aredeem(env) == data
    clock.advance(5)
    assert await cc.asweep() == 1
    assert _keys(s3, bucket) == []

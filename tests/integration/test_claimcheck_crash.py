"""A writer killed with SIGKILL mid-payload leaves nothing readable; sweep reclaims its file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from resilience import ClaimCheck, FileBlobStore, PayloadMissing
from resilience.testing import FakeClock

KEY = b"0123456789abcdef0123456789abcdef"

WRITER = textwrap.dedent(
    """
    import sys
    from resilience import ClaimCheck, FileBlobStore

    def payload():
        chunk = b"x" * (1024 * 1024)
        for i in range(100):  # 100 MiB
            yield chunk
            if i == 20:
                print("halfway", flush=True)
                sys.stdin.readline()  # wait here until killed

    cc = ClaimCheck(FileBlobStore(sys.argv[1]), b"0123456789abcdef0123456789abcdef")
    cc.check_in(payload())
    print("finished", flush=True)
    """
)


def test_writer_killed_mid_payload_leaves_nothing_visible(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"halfway\n"
        deadline = time.monotonic() + 30
        while not os.listdir(tmp_path / "tmp"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    leftovers = os.listdir(tmp_path / "tmp")
    assert len(leftovers) == 1
    assert (tmp_path / "tmp" / leftovers[0]).stat().st_size >= 20 * 1024 * 1024
    assert os.listdir(tmp_path / "blobs") == [] and os.listdir(tmp_path / "refs") == []

    store = FileBlobStore(tmp_path)
    cc = ClaimCheck(store, KEY, clock=FakeClock(0.0))
    # a live writer in this process is never swept
    live = store.begin()
    live.write(b"y" * 1000)
    assert cc.sweep() == 1
    assert os.listdir(tmp_path / "tmp") == [os.path.basename(live.path)]
    live.abort()
    assert os.listdir(tmp_path / "tmp") == []
    assert store.expired(0.0) == []
    try:
        store.reader("a" * 64)
    except PayloadMissing:
        pass
    else:
        raise AssertionError("a payload appeared")


def test_payload_visible_only_after_commit(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    cc = ClaimCheck(store, KEY, threshold=1)
    env = cc.check_in(b"hello world")
    ticket = cc.ticket(env)
    assert ticket is not None
    assert os.listdir(tmp_path / "blobs") == [ticket.blob_id]
    assert os.listdir(tmp_path / "tmp") == []


SHARER = textwrap.dedent(
    """
    import sys
    from resilience import ClaimCheck, FileBlobStore
    from resilience.events import EventBus

    cc = ClaimCheck(FileBlobStore(sys.argv[1], fsync=False),
                    b"0123456789abcdef0123456789abcdef", threshold=1, events=EventBus())
    data = bytes(range(256)) * 400
    sys.stdin.readline()  # start together
    for _ in range(25):
        env = cc.check_in(data)
        assert cc.redeem(env) == data
        cc.release(env)
    print("ok", flush=True)
    """
)


def test_processes_share_a_directory(tmp_path: Path) -> None:
    """Three processes check in and release the same bytes; a fourth's ticket survives."""
    cc = ClaimCheck(FileBlobStore(tmp_path), KEY, threshold=1)
    data = bytes(range(256)) * 400
    keeper = cc.check_in(data)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SHARER, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert out == b"ok\n" and child.returncode == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    assert cc.redeem(keeper) == data
    assert cc.release(keeper) is True
    assert os.listdir(tmp_path / "blobs") == [] and os.listdir(tmp_path / "tmp") == []

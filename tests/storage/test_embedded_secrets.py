"""The embedded Redis socket lives in a private folder (0700, ours), never at
a path another local user could create first, however long the data dir."""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import redis

from core.paths import runtime_dir
from core.settings import load_settings, prepare_data_dir
from storage.embedded import EmbeddedRedis, _socket_path


def _private(path: Path) -> None:
    info = path.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    assert stat.S_IMODE(info.st_mode) == 0o700


def _long_data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / ("x" * 60) / ("y" * 60)
    prepare_data_dir(load_settings(data_dir=str(data_dir)))
    return data_dir


def test_short_data_dir_keeps_the_socket_inside(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    prepare_data_dir(load_settings(data_dir=str(data_dir)))
    sock = _socket_path(data_dir)
    assert sock.parent == data_dir / "redis"
    _private(sock.parent)


def test_long_data_dir_gets_a_private_unpredictable_folder(tmp_path: Path) -> None:
    data_dir = _long_data_dir(tmp_path)
    # What the old scheme would have used: a name anyone can compute.
    predictable = Path(tempfile.gettempdir()) / (
        "b" + hashlib.sha256(str(data_dir).encode()).hexdigest()[:10] + "-redis")
    folder = runtime_dir(data_dir, "redis", budget=89)
    assert folder != predictable and len(str(folder / "redis.sock")) <= 100
    _private(folder)
    assert runtime_dir(data_dir, "redis", budget=89) == folder  # found again
    other = _long_data_dir(tmp_path / "other")
    assert runtime_dir(other, "redis", budget=89) != folder


def test_a_tampered_folder_is_not_reused(tmp_path: Path) -> None:
    data_dir = _long_data_dir(tmp_path)
    folder = runtime_dir(data_dir, "redis", budget=89)
    folder.chmod(0o777)
    assert runtime_dir(data_dir, "redis", budget=89) != folder


def test_redis_starts_with_a_long_data_dir(tmp_path: Path) -> None:
    data_dir = _long_data_dir(tmp_path)
    server = EmbeddedRedis(data_dir)
    url = server.start()
    try:
        sock = Path(url.removeprefix("unix://"))
        _private(sock.parent)
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
        finally:
            client.close()
    finally:
        server.stop()

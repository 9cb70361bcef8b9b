"""Short runtime paths: unix socket paths are capped (~100 bytes), data dirs
are not. A runtime dir is always private (0700, ours): a socket in a folder
another local user could create or enter would let them serve as our Redis
or reach it."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def runtime_dir(data_dir: Path, name: str, budget: int = 40) -> Path:
    """A private folder for `name`'s sockets, created if need be:
    `data_dir/name` when short enough, else a fresh `mkdtemp()` folder (an
    unpredictable name) whose path is remembered in `data_dir/name.runtime`,
    so the next start and `stop()` find the same one."""
    path = data_dir / name
    if len(str(path)) <= budget:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        return path
    record = data_dir / f"{name}.runtime"
    try:
        remembered = Path(record.read_text().strip())
    except (OSError, ValueError):
        remembered = None
    if remembered is not None and len(str(remembered)) <= budget and is_private(remembered):
        return remembered
    fresh = Path(tempfile.mkdtemp(prefix=f"bidi-{name}-"))
    record.write_text(str(fresh))
    return fresh


def find_runtime_dir(data_dir: Path, name: str, budget: int = 40) -> Path | None:
    """The folder `runtime_dir` gave `name`, if it exists; creates nothing
    (for looking at what an earlier engine left before preparing anything)."""
    path = data_dir / name
    if len(str(path)) > budget:
        try:
            path = Path((data_dir / f"{name}.runtime").read_text().strip())
        except (OSError, ValueError):
            return None
    return path if is_private(path) else None


def is_private(path: Path) -> bool:
    """A real folder (not a link) of ours that nobody else may enter."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) & 0o077 == 0)

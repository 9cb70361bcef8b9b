"""Short runtime paths: unix socket paths are capped (~100 bytes), data dirs
are not."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path


def runtime_dir(data_dir: Path, name: str, budget: int = 40) -> Path:
    """`data_dir/name` when short enough, else a per-data-dir folder in /tmp."""
    path = data_dir / name
    if len(str(path)) <= budget:
        return path
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"b{digest}-{name}"

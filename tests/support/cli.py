"""The project's command line, run as a user runs it: ``python -m twin_cds.cli``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def twin_cds(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``twin-cds ARGS`` in a child process of this interpreter; its output captured, its
    exit status left to the caller (``check=False``)."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "twin_cds.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )

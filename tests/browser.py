"""Headless Chromium for tests: screenshots and the rendered DOM of a page.

Debian's ``chromium`` (``apt-get install -y chromium``; `.ci/run` installs it when
missing). Each call uses a fresh profile folder, so runs never share state.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--virtual-time-budget=8000", "--window-size=1400,1800")


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed: apt-get install -y chromium (CI: .ci/run does it)")
    return found


def _run(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="pt-chromium-") as profile:
        return subprocess.run([chromium_path(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, check=True)


def screenshot(url: str, out: Path) -> Path:
    _run(url, f"--screenshot={out}")
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {url} to {out}")
    return out


def rendered_dom(url: str) -> str:
    """The DOM after scripts ran (virtual time), as HTML."""
    return _run(url, "--dump-dom").stdout

"""Export onto a full disk or into a folder it may not write: a clear error naming the
folder, and nothing half-written (no partial export, an older export left intact).

The full disk is the kernel's: the exporting process runs with ``RLIMIT_FSIZE`` below
the model's size, so its writes fail with EFBIG as they would with ENOSPC. The
unwritable folder is made immutable (``chattr +i``), which refuses even root.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability.figures import record

pytestmark = pytest.mark.reliability

EXPORT = """
import sys, torch
from torch import nn
import prunetune
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 16))
prunetune.prune(model, 0.5, criterion="magnitude")
try:
    prunetune.export(model, sys.argv[1])
except OSError as err:
    print("ERROR", err)
    sys.exit(3)
print("OK")
"""


def _export(out: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limits() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-c", EXPORT, str(out)], capture_output=True, text=True,
                          preexec_fn=limits)


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


def test_full_disk_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    full = _export(out, limit_bytes=64 * 1024)
    assert full.returncode == 3, full.stdout + full.stderr
    assert f"export to '{out}' failed, nothing was written there" in full.stdout
    assert "File too large" in full.stdout
    assert not out.exists() and _leftovers(tmp_path) == []
    # An earlier, complete export stays as it was when a later one fails.
    ok = _export(out)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = _export(out, limit_bytes=64 * 1024)
    assert again.returncode == 3
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _leftovers(tmp_path) == []
    record("fault.export_full_disk", faults_injected=2, faults_survived=2)


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    # Immutable: not even root may create entries in it (tests run as root in CI).
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    try:
        denied = _export(locked / "pruned")
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert denied.returncode == 3, denied.stdout + denied.stderr
    assert f"cannot export to '{locked / 'pruned'}'" in denied.stdout and "not permitted" in denied.stdout
    assert list(locked.iterdir()) == []
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    blocked = _export(a_file / "pruned")
    assert blocked.returncode == 3 and f"cannot export to '{a_file / 'pruned'}'" in blocked.stdout
    record("fault.export_unwritable", faults_injected=2, faults_survived=2)

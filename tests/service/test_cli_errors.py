"""The CLI's service commands end a failure in one line naming what was wrong (file, URL,
driver, connection, id) and a non-zero exit, never a traceback; ``--db`` never creates a
folder; tokens can be listed and revoked; ``export`` refuses a folder with files unless
``--overwrite``. Real processes (``python -m prunetune.cli``), real SQLite files, the real
PostgreSQL server (and a port where none listens)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import digits_spec_dict

from prunetune import Client
from prunetune.store.tokens import verify_token


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prunetune.cli", *args], capture_output=True, text=True, cwd=cwd)


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def test_each_failure_is_one_line_naming_what_was_wrong(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes("name: caf\xe9\n".encode("latin-1"))
    _one_line_error(_cli("submit", str(spec), "--db", db), "latin1.yaml", "UTF-8")
    port = _closed_port()
    _one_line_error(_cli("status", "1", "--url", "localhost:8000"), "'localhost:8000'", "http")
    _one_line_error(_cli("status", "1", "--url", f"http://127.0.0.1:{port}"), f"http://127.0.0.1:{port}")
    _one_line_error(_cli("status", "1", "--db", "not a url"), "--db", "not a url")
    _one_line_error(_cli("status", "1", "--db", "mysql://u@h/d"), "--db", "mysql")
    _one_line_error(_cli("worker", "--db", "postgresql+asyncpg://u@127.0.0.1/d"), "asyncpg")
    _one_line_error(_cli("status", str(2**64), "--db", db), "JOB", str(2**64))
    pg = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{port}/test"
    line = _one_line_error(_cli("status", "1", "--db", pg), "cannot connect", str(port))
    assert "hunter2" not in line  # the password is never printed
    # `run` checks the database before it loads the model.
    spec_ok = tmp_path / "digits.yaml"
    spec_ok.write_text(json.dumps(digits_spec_dict()))
    _one_line_error(_cli("run", str(spec_ok), "--db", pg), "--db", "cannot connect")


def test_db_never_creates_a_folder_and_reading_commands_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    for args in (["status", "1"], ["front", "1"], ["submit", "x.yaml"], ["token", "create"], ["serve"],
                 ["token", "list"]):
        _one_line_error(_cli(*args, "--db", f"sqlite:///{missing / 'jobs.db'}"), "does not exist")
    assert not (tmp_path / "no").exists()
    _one_line_error(_cli("status", "1", "--db", f"sqlite:///{tmp_path / 'jobs.db'}"), "no database file")
    assert list(tmp_path.iterdir()) == []


def test_token_create_admin_list_and_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    made = _cli("token", "create", "--owner", "ops", "--admin", "--db", db)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    listed = _cli("token", "list", "--db", db)
    assert listed.returncode == 0 and token not in listed.stdout and token.split("_")[2] not in listed.stdout
    (row,) = json.loads(listed.stdout)
    assert row["owner"] == "ops" and row["admin"] is True and row["revoked_at"] is None
    assert token.split("_")[1] == row["prefix"] and verify_token(db, token) == "ops"
    assert _cli("token", "revoke", row["prefix"], "--db", db).returncode == 0
    assert verify_token(db, token) is None
    assert json.loads(_cli("token", "list", "--db", db).stdout)[0]["revoked_at"] is not None
    _one_line_error(_cli("token", "revoke", row["prefix"], "--db", db), "PREFIX", "token list")


@pytest.mark.parametrize("overwrite", [False, True])
def test_export_refuses_a_folder_with_files_unless_overwrite(tmp_path: Path, overwrite: bool) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    client = Client.embedded(db)
    job = client.submit(digits_spec_dict(budget={"trials": 2}))
    assert job.wait().state == "succeeded"
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["export", str(job.id), "--best", "--out", str(out), "--db", db]
    if overwrite:
        done = _cli(*args, "--overwrite")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == str(out)
    else:
        _one_line_error(_cli(*args), "'out'", "--overwrite")
        assert [p.name for p in out.iterdir()] == ["notes.txt"]

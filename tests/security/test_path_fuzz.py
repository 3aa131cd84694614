"""Fuzzing every path field a request carries: no escape from the roots, no 5xx.

Hypothesis builds paths from pieces an attacker or a careless user would use (``..``,
absolute paths outside the roots, NUL bytes, over-long names, unicode and lone
surrogates, and real symlinks the test makes: one to a folder outside, one to a file
outside, a loop) and sends each as ``model.path``, ``task.data``,
``strategy.options.policy_path`` and an export's ``out``, to the real API (FastAPI in
process) over a real SQLite file, confined to ``tmp/root``. Every answer must be below
500, and an accepted path must resolve inside the roots; nothing may appear outside.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import digits_spec_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.figures import record

from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.service.jobs import JobService
from prunetune.service.roots import ROOTS_ENV
from prunetune.store.tokens import create_token

pytestmark = pytest.mark.reliability  # hundreds of generated requests: the CI reliability set

EXAMPLES = 80  # generated paths per field


def _pieces(root: Path, outside: Path) -> st.SearchStrategy[str]:
    piece = st.sampled_from([
        "..", ".", "data.csv", "folder", "link-out", "link-file", "loop", "x" * 300, "a\x00b", "\udcff",
        "é漢字", " ", "~", "$HOME", "%2e%2e", "....", str(outside), str(root), "/etc", "/proc/self",
    ])
    return st.lists(piece, min_size=1, max_size=5).map(lambda parts: "/".join(parts)) | st.sampled_from([
        str(outside / "secret.csv"), str(root / "link-out" / "secret.csv"), str(root / "link-file"),
        str(root / ".." / "outside" / "secret.csv"), "../outside/secret.csv", "x" * 5000, "",
    ])


def _spec(field: str, path: str) -> dict[str, Any]:
    if field == "model.path":
        return digits_spec_dict(model={"path": path}, task={"kind": "classification", "data": "sklearn:iris"})
    if field == "task.data":
        return digits_spec_dict(task={"kind": "classification", "data": path})
    return digits_spec_dict(strategy={"name": "policy-gradient", "options": {"policy_path": path}})


def _inside(path: str, root: Path) -> bool:
    resolved = Path(path).resolve()
    return resolved == root.resolve() or root.resolve() in resolved.parents


def test_fuzzed_path_fields_never_escape_and_never_get_a_5xx(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.csv").write_text("SECRET,b\n1,2\n")
    (root / "data.csv").write_text("a,label\n1,0\n")
    (root / "folder").mkdir()
    os.symlink(outside, root / "link-out")
    os.symlink(outside / "secret.csv", root / "link-file")
    os.symlink(root / "loop", root / "loop")
    monkeypatch.setenv(ROOTS_ENV, str(root))
    monkeypatch.chdir(outside)  # a relative path must never be read against a process's folder
    before_outside = sorted(p.name for p in outside.iterdir())
    job = JobService(sqlite_url).submit(digits_spec_dict(budget={"trials": 2}), owner="local")
    JobRunner(sqlite_url, workers=0, poll_s=0.1).run_one(job["id"])
    tried = {"model.path": 0, "task.data": 0, "strategy.options.policy_path": 0, "export.out": 0}
    escaped: list[str] = []
    errors: list[str] = []

    with TestClient(create_app(sqlite_url)) as client:
        auth = {"Authorization": f"Bearer {create_token(sqlite_url, owner='local')}"}

        def check(field: str, path: str, resp: Any, stored: str | None) -> None:
            tried[field] += 1
            if resp.status_code >= 500:
                errors.append(f"{field} {path!r:.80} -> {resp.status_code} {resp.text[:200]}")
            if "SECRET" in resp.text:
                escaped.append(f"{field} {path!r:.80}: the outside file's contents in the answer")
            if stored is not None and not _inside(stored, root):
                escaped.append(f"{field} {path!r:.80} accepted as {stored!r}")

        def send(field: str, path: str) -> None:
            if field == "export.out":
                body = json.dumps({"trial": 0, "out": path}, ensure_ascii=True)
                resp = client.post(f"/jobs/{job['id']}/export", content=body,
                                   headers={**auth, "Content-Type": "application/json"})
                stored = resp.json()["path"] if resp.status_code < 300 else None
                check(field, path, resp, stored)
                return
            body = json.dumps({"spec": _spec(field, path)}, ensure_ascii=True)
            resp = client.post("/jobs", content=body, headers={**auth, "Content-Type": "application/json"})
            stored = None
            if resp.status_code == 201:
                spec = resp.json()["spec"]
                stored = {"model.path": lambda s: s["model"]["path"], "task.data": lambda s: s["task"]["data"],
                          "strategy.options.policy_path": lambda s: s["strategy"]["options"]["policy_path"]}[field](spec)
                if field == "task.data" and not os.path.isabs(stored):
                    stored = None  # a bundled source name (pydoc, digits, sklearn:...), not a path
            check(field, path, resp, stored)

        @settings(max_examples=EXAMPLES * len(tried), deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(path=_pieces(root, outside))
        def run(path: str) -> None:
            # Fields in turn (not drawn), so each gets its share of the examples.
            send(list(tried)[sum(tried.values()) % len(tried)], path)

        run()

    assert errors == [], "\n".join(errors[:10])
    assert escaped == [], "\n".join(escaped[:10])
    assert sorted(p.name for p in outside.iterdir()) == before_outside  # nothing created outside
    assert all(n >= EXAMPLES // 2 for n in tried.values()), tried
    record("security.path_fuzz", escapes_tried=sum(tried.values()), escaped=len(escaped), answers_5xx=len(errors),
           **{k.replace(".", "_"): v for k, v in tried.items()})

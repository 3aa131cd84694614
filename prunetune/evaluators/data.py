"""Offline data: text chunks from Python's bundled documentation, split disjointly."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunetune.errors import SpecError
from prunetune.paths import confine_open

# Fixed so that the REPORT split is the same for every job and every seed: results of
# different searches stay comparable.
SPLIT_SEED = 20240601


def pydoc_chunks(min_words: int = 8, max_words: int = 60) -> list[str]:
    """Unique chunks of ``min_words``..``max_words`` words from ``pydoc_data.topics``.

    Paragraphs are kept whole when short enough, long ones cut into ``max_words`` pieces.
    """
    from pydoc_data.topics import topics

    seen: set[str] = set()
    chunks: list[str] = []
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            words = para.split()
            for i in range(0, len(words), max_words):
                piece = words[i : i + max_words]
                if len(piece) < min_words:
                    continue
                text = " ".join(piece)
                if text not in seen:
                    seen.add(text)
                    chunks.append(text)
    return chunks


def _chunk_text(text: str, min_words: int, max_words: int) -> list[str]:
    seen: set[str] = set()
    chunks: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        for i in range(0, len(words), max_words):
            piece = words[i : i + max_words]
            if len(piece) >= min_words:
                joined = " ".join(piece)
                if joined not in seen:
                    seen.add(joined)
                    chunks.append(joined)
    return chunks


def text_chunks(data: Any, kind: str) -> list[str]:
    """Text examples for ``task.data``: "pydoc" or a local ``.txt`` file (paragraphs,
    cut as ``pydoc_chunks`` cuts them).

    Raises:
        SpecError: on ``task.data`` when it is neither.
    """
    if not isinstance(data, str):  # a datasets source: its rows, in order, cut the same way
        from prunetune.evaluators.datasets_source import load_texts

        return _chunk_text("\n\n".join(load_texts(data)), 8, 60)
    if data == "pydoc":
        return pydoc_chunks()
    path = confine_open("task.data", data)
    if path.suffix == ".txt" and path.is_file():
        return _chunk_text(_read_utf8(path, data), 8, 60)
    raise SpecError("task.data", data, f"the {kind} task reads 'pydoc' or a local .txt file")


def text_rows(data: Any) -> list[str]:
    """The text of ``task.data`` in its own order, uncut (``protocol: contiguous``): a
    datasets source's rows (empty ones included, as published perplexity protocols join
    them), a ``.txt`` file whole, or pydoc's topics in key order.

    Raises:
        SpecError: on ``task.data`` when it is none of these.
    """
    if not isinstance(data, str):
        from prunetune.evaluators.datasets_source import load_texts

        return load_texts(data)
    if data == "pydoc":
        from pydoc_data.topics import topics

        return [topics[k] for k in sorted(topics)]
    path = confine_open("task.data", data)
    if path.suffix == ".txt" and path.is_file():
        return [_read_utf8(path, data)]
    raise SpecError("task.data", data, "protocol 'contiguous' reads 'pydoc', a local .txt file or a datasets source")


def file_chunks(path: str | Path) -> list[str]:
    """Text examples of a local UTF-8 text file, in file order: paragraphs cut into
    chunks of 8 to 60 words, as ``pydoc_chunks`` cuts them.

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read as UTF-8 text.
    """
    return _chunk_text(Path(path).read_text(encoding="utf-8"), 8, 60)


def _read_utf8(p: Path, given: str) -> str:
    """The file's text. Errors name the file and the position, never its bytes: a job's
    error is visible to whoever submitted it, who may not be the file's reader."""
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("task.data", given, f"a UTF-8 text file (the byte at offset {err.start} is not UTF-8)") from None
    except OSError as err:
        raise SpecError("task.data", given, f"a readable file ({err.strerror or type(err).__name__})") from None


def read_records(path: Any) -> list[dict[str, Any]]:
    """Rows of a local ``.csv`` (header row) or ``.jsonl`` (one JSON object a line) file,
    or of a datasets source (:class:`prunetune.spec.DatasetSource`).

    Raises:
        SpecError: on ``task.data``, naming the file and line, never quoting its contents.
    """
    if not isinstance(path, str):
        from prunetune.evaluators.datasets_source import load_rows

        return load_rows(path)
    p = confine_open("task.data", path)
    if not p.is_file():
        raise SpecError("task.data", path, "no such file; give a local .csv or .jsonl file")
    if p.suffix == ".csv":
        try:
            return list(csv.DictReader(io.StringIO(_read_utf8(p, path), newline="")))
        except csv.Error as err:
            raise SpecError("task.data", path, f"a CSV file with a header row ({err})") from None
    if p.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(_read_utf8(p, path).splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise SpecError("task.data", f"{path}:{n}", f"not valid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(row, dict):
                    raise SpecError("task.data", f"{path}:{n}", f"one JSON object a line; got a {type(row).__name__}")
                rows.append(row)
        return rows
    raise SpecError("task.data", path, "allowed file types: .csv, .jsonl")


def digest(items: Sequence[object]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(repr(item).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Splits:
    """Disjoint calibration, search, report and validation examples."""

    calibration: list[str]
    search: list[str]
    report: list[str]
    validation: list[str] = field(default_factory=list)

    def hashes(self) -> dict[str, str]:
        return {k: digest(getattr(self, k)) for k in ("calibration", "search", "report", "validation")}


def validation_size(requested: int | None, search: int, left: int, unit: str = "examples") -> int:
    """How many examples the validation split takes from the ``left`` that remain after
    calibration, search and report (it is cut after them, so they never move).

    ``requested`` None: as many as the search split, or all that is left when fewer.

    Raises:
        SpecError: on ``task.validation`` when more are requested than are left.
    """
    if requested is None:
        return max(0, min(search, left))
    if requested > left:
        raise SpecError("task.validation", requested,
                        f"the data leaves {max(left, 0)} {unit} after calibration, search and report; "
                        "give at most that many, or more data, or smaller splits")
    return requested


def split_text(chunks: Sequence[str], calibration: int, search: int, report: int,
               validation: int | None = None) -> Splits:
    """Shuffle once with a fixed seed and cut disjoint splits; validation comes last
    (``validation_size``), so the other three are the same whatever its size.

    Raises:
        SpecError: naming ``task.calibration+search+report`` (or ``task.validation``) when
            the corpus is too small for the requested sizes.
    """
    need = calibration + search + report
    if need > len(chunks):
        raise SpecError(
            "task.calibration+search+report",
            need,
            f"the text has {len(chunks)} unique chunks; the three splits must fit in it",
        )
    order = list(chunks)
    random.Random(SPLIT_SEED).shuffle(order)
    return Splits(
        calibration=order[:calibration],
        search=order[calibration : calibration + search],
        report=order[calibration + search : need],
        validation=order[need : need + validation_size(validation, search, len(order) - need, "chunks")],
    )

"""Task data through the ``datasets`` library: a Hub dataset from the local datasets cache
(offline unless ``HF_DATASETS_OFFLINE=0``), a folder written by ``Dataset.save_to_disk``,
or a local ``.parquet`` / ``.json`` / ``.jsonl`` / ``.csv`` file.

``task.data: {dataset: wikitext, config: wikitext-2-raw-v1, split: test, column: text}``
(see :class:`prunetune.spec.DatasetSource`). Rows come back in the dataset's own order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prunetune.errors import SpecError
from prunetune.spec import DatasetSource

FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as err:
        raise SpecError("task.data.dataset", None,
                        f"reading it needs the datasets package: pip install datasets ({err})") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    datasets.disable_progress_bars()
    return datasets


def load_rows(source: DatasetSource) -> list[dict[str, Any]]:
    """Every row of ``source``'s split, in order, as plain dicts.

    Raises:
        SpecError: naming ``task.data.*``: no such dataset, split or file.
    """
    from prunetune.paths import confine_open

    ds_lib = _datasets()
    name = source.dataset
    local = Path(name).expanduser()
    try:
        if local.exists() or name.startswith((".", "/", "~")):
            path = confine_open("task.data.dataset", name)
            if path.is_dir():
                loaded = ds_lib.load_from_disk(str(path))
                if isinstance(loaded, ds_lib.DatasetDict):
                    if source.split not in loaded:
                        raise SpecError("task.data.split", source.split,
                                        f"the folder holds splits {', '.join(sorted(loaded))}")
                    loaded = loaded[source.split]
            elif path.suffix in FILE_BUILDERS:
                loaded = ds_lib.load_dataset(FILE_BUILDERS[path.suffix], data_files=str(path), split="train")
            else:
                raise SpecError("task.data.dataset", name, "a save_to_disk folder or a local "
                                f"{', '.join(FILE_BUILDERS)} file (or a Hub dataset name in the datasets cache)")
        else:
            loaded = ds_lib.load_dataset(name, source.config, split=source.split, revision=source.revision)
    except SpecError:
        raise
    except (OSError, ValueError, KeyError) as err:  # not cached, unknown config or split, bad file
        offline = os.environ.get("HF_DATASETS_OFFLINE", "1") not in ("0", "false", "no", "off")
        hint = " (offline: it must be in the datasets cache; HF_DATASETS_OFFLINE=0 downloads it)" if offline else ""
        raise SpecError("task.data.dataset", name,
                        f"could not load split {source.split!r}{hint}: {type(err).__name__}: {err}") from None
    if source.column not in loaded.column_names:
        raise SpecError("task.data.column", source.column,
                        f"the dataset's columns are {', '.join(loaded.column_names)}")
    return [dict(row) for row in loaded]


def load_texts(source: DatasetSource) -> list[str]:
    """The ``column`` of every row, in order (non-string values are refused)."""
    rows = load_rows(source)
    texts = [row[source.column] for row in rows]
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise SpecError("task.data.column", source.column,
                        f"a text column; row {bad} holds {type(texts[bad]).__name__}")
    return texts

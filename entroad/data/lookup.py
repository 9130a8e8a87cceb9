"""A processed dataset found by name, or an error that gives the command which makes it.

Two different dead ends get two different answers: a name params.yaml does not know ("not
configured": did-you-mean, and the entry to add) and a configured dataset with no processed
data yet ("not ingested": the exact ``entroad ingest <name>``, after ``entroad data samples``
when its raw sample folder is still to be written). Several names are checked at once, so
a suite reports every missing dataset with one command that fixes them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from entroad.config import Params
from entroad.data.formats import FORMATS
from entroad.data.manifest import DATASET_FILE, MANIFEST_FILE
from entroad.data.versioning import dataset_dir, recorded_dvc_hash
from entroad.errors import DatasetNotConfiguredError, DatasetNotIngestedError, did_you_mean


def is_processed(folder: Path) -> bool:
    return (folder / DATASET_FILE).is_file() and (folder / MANIFEST_FILE).is_file()


def is_plain_name(item: Any) -> bool:
    """A dataset *name* (looked up under data.root), not a folder path or a loaded object."""
    if not isinstance(item, str):
        return False
    return not (Path(item).expanduser().exists() or "/" in item or "\\" in item)


def _configured(params: Params) -> dict[str, Any]:
    return {d.name: d for d in params.data.datasets}


def _source_missing(spec: Any) -> bool:
    if not spec.source:
        return False
    src = Path(spec.source).expanduser()
    return not (src if src.is_absolute() else Path.cwd() / src).is_dir()


def fix_command(params: Params, names: Sequence[str]) -> str:
    """One shell line that ingests ``names`` (writing the bundled raw samples first if needed)."""
    specs = _configured(params)
    samples = any(specs[n].generate is not None and _source_missing(specs[n]) for n in names if n in specs)
    ingest = "entroad ingest " + " ".join(names)
    return f"entroad data samples && {ingest}" if samples else ingest


def _not_configured(params: Params, names: list[str]) -> str:
    known = sorted(_configured(params))
    hints = "".join(f"\n  {n!r}{did_you_mean(n, known)}" for n in names if did_you_mean(n, known))
    if all(did_you_mean(n, known) for n in names):  # a typo, not a dataset to add
        return f"no dataset named{hints.replace(chr(10) + '  ', ' ', 1)}\nConfigured: {', '.join(known)}"
    example = names[0]
    fmt = example if example in FORMATS else "folder"  # a benchmark's name is its layout's name
    return (
        f"not configured in params.yaml: {', '.join(names)}{hints} (and not processed under "
        f"{dataset_dir(params, example).parent})\n"
        f"Configured: {', '.join(known) or 'none'}. To add one, put an entry under data.datasets in params.yaml, "
        f"e.g.\n  {example}: {{format: {fmt}, source: datasets/raw/{example}}}\n"
        f"then run `entroad ingest {' '.join(names)}` (layouts and options: `entroad data formats`; or once, "
        f"without params.yaml: `entroad ingest {example} --format {fmt} --source PATH`)"
    )


def _not_ingested(params: Params, names: list[str]) -> str:
    specs = _configured(params)
    lines = []
    for n in names:
        spec = specs[n]
        if spec.generate is not None and _source_missing(spec):
            why = "bundled sample: its raw folder is not written yet"
        elif _source_missing(spec):
            why = (f"its source folder {spec.source} does not exist: put the raw images there first "
                   f"(layout: `entroad data formats {spec.format}`)")
        elif recorded_dvc_hash(dataset_dir(params, n)) is not None:
            why = f"DVC has a version of it: `entroad data pull {n}` fetches it from the remote"
        else:
            why = "configured, never ingested"
        lines.append(f"  {n}: {why}")
    return f"not ingested yet: {', '.join(names)}\n" + "\n".join(lines) + f"\nRun: `{fix_command(params, names)}`"


def require_processed(params: Params, items: Iterable[Any], what: str = "") -> dict[str, Path]:
    """``{name: processed folder}`` of every plain dataset name among ``items`` (paths and
    loaded datasets are left to the caller). Raises one error naming *every* missing one:
    :class:`DatasetNotConfiguredError` when a name is unknown, else
    :class:`DatasetNotIngestedError`. ``what`` says who needs them (e.g. "suite 'industrial'")."""
    names = [i for i in dict.fromkeys(items) if is_plain_name(i)]
    found = {n: dataset_dir(params, n) for n in names}
    missing = [n for n, p in found.items() if not is_processed(p)]
    if not missing:
        return found
    specs = _configured(params)
    unknown = [n for n in missing if n not in specs]
    pending = [n for n in missing if n in specs]
    prefix = f"{what}: " if what else ""
    if unknown:
        text = _not_configured(params, unknown)
        if pending:
            text += "\n" + _not_ingested(params, pending)
        raise DatasetNotConfiguredError(prefix + text)
    raise DatasetNotIngestedError(prefix + _not_ingested(params, pending))


def processed_dir(params: Params, name: str, what: str = "") -> Path:
    """The processed folder of dataset ``name`` (see :func:`require_processed`)."""
    if not is_plain_name(name):
        return Path(name).expanduser()
    return require_processed(params, [name], what)[name]

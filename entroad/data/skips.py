"""What an ingest left out, in words a user acts on.

An ingest never drops a file silently: :func:`skip_summary` turns a dataset's audit into
terminal lines (reason, count, how to change it, where the full list is) that
:func:`entroad.data.ingest.report_skips` logs for every command and flow that ingests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from entroad.data.convert import KEPT_NO_MASK, NO_MASK

# Reason category -> what the user can do about it ({keep}: how to set missing_masks: keep).
_HINTS = {
    NO_MASK: "{keep} to keep them with an image-level label",
    "mask without image": "name each mask after its image (<image stem>_mask.png) or remove it",
    "corrupt or unreadable image": "replace or remove these files",
    "corrupt or unreadable mask": "replace or remove these masks",
    "mask size differs from image": "a mask must have its image's width and height",
    "duplicate file": "identical bytes: remove the copies",
    "duplicate name": "two files share a name apart from the extension: rename one",
    "malformed metadata": "fix these values in the dataset's metadata file",
    "path escapes the dataset folder": "metadata paths must stay inside the source folder",
}


def set_option(name: str, configured: bool, option: str, value: str) -> str:
    """How a user sets one reader option of ``name``: in its params.yaml entry, or ``-o`` ad hoc."""
    if configured:
        return f"set `{option}: {value}` under data.datasets.{name}.options in params.yaml"
    return f"add `-o {option}={value}` to the command"


def skip_summary(name: str, audit: dict[str, Any], folder: Path, configured: bool = True) -> list[str]:
    """Lines saying what ``name``'s ingest skipped or kept without a mask ([] when neither)."""
    keep = set_option(name, configured, "missing_masks", "keep")
    reasons: dict[str, int] = dict(audit.get("skipped_by_reason") or {})
    lines = []
    total = int((audit.get("counts") or {}).get("skipped", sum(reasons.values())))
    if total:
        parts = []
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            hint = _HINTS.get(reason)
            parts.append(f"{reason} ({n})" + (f" - {hint.format(keep=keep)}" if hint else ""))
        lines.append(f"{name}: skipped {total}: " + "; ".join(parts) + f". Full list: {folder / 'audit.json'}")
    kept = int(((audit.get("stats") or {}).get(KEPT_NO_MASK)) or 0)
    if kept:
        lines.append(
            f"{name}: kept {kept} anomalous image(s) without a mask: image-level label only, left out of pixel "
            f"metrics ({set_option(name, configured, 'missing_masks', 'skip')} to drop them)"
        )
    return lines

"""``--set section.key=value``: one parameter changed on the command line, before validation.

Why its own module: every stage command takes ``--set`` and DVC/Snakemake runs may pass it; the
override is applied to the parsed YAML mapping, so ``config`` validates it exactly like the file.
"""

from __future__ import annotations

from typing import Any

import yaml

from stvm.errors import StvmError


def apply_override(raw: Any, item: str) -> dict[str, Any]:
    """``raw`` with ``section.key=value`` set (the value read as YAML: 0.01, [1, 2], true, text)."""
    key, sep, text = item.partition("=")
    names = key.strip().split(".")
    if not sep or not all(names):
        raise StvmError(None, f"--set {item[:80]!r}: expected section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StvmError(None, f"--set {key}: value is not valid YAML ({str(err).splitlines()[0][:120]})") from None
    out = dict(raw) if isinstance(raw, dict) else {}
    node = out
    for name in names[:-1]:
        child = node.get(name)
        node[name] = dict(child) if isinstance(child, dict) else {}
        node = node[name]
    node[names[-1]] = value
    return out

"""The YAML reader of params files: ``yaml.SafeLoader`` (no Python objects, so no code runs) bounded
against alias bombs and a key given twice (the second would silently win). ``stvm.config`` reads
every params file through it.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

MAX_YAML_NODES = 100_000  # a params file has a few hundred; more is an alias bomb (billion laughs)


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose aliases expand past ``MAX_YAML_NODES`` and a
    mapping that gives a key twice, at any depth (the second would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = None if key_node.tag == "tag:yaml.org,2002:merge" else self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float)):  # hashable scalars (1, 1.0 and true are one key to Python)
                if key in seen:
                    raise yaml.YAMLError(f"key {reprlib.repr(key)} given twice in one mapping (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_document(self, node: yaml.Node) -> Any:
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.YAMLError(f"the document expands to more than {MAX_YAML_NODES:,} values "
                                 "through aliases (an alias bomb?)")
        return super().construct_document(node)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Number of nodes ``node`` stands for once every alias is expanded (memoised per node)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_YAML_NODES + 1  # a cycle counts as too large
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_YAML_NODES + 1)
    return memo[id(node)]

"""Where a value sits in a qna.yaml: data paths to line and column, and back.

The YAML node graph (from :func:`labmake.taxonomy.source.parse`) keeps each value's position in
the text; findings speak in data paths (``seed_examples[3].answer``), so these helpers walk the
graph to turn one into the other. Aliases are the same node object as their anchor, so each
distinct node is visited once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


def line_col(mark: Any) -> tuple[int | None, int | None]:
    """1-based (line, column) of a PyYAML mark; (None, None) when there is none."""
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def children(node: Node) -> Sequence[Node]:
    """The nodes directly inside ``node``: list items, or a mapping's keys and values."""
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


def iter_nodes(root: Node) -> Iterator[Node]:
    """Each distinct node once (aliases are not followed twice)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(reversed(children(node)))


def node_at(root: Node | None, path: Sequence[Any], *, key: bool = False) -> Node | None:
    """The node at a data path (map keys / list indexes); the key's node when ``key``.

    Returns the deepest node reached when the path leaves the document (a missing key points
    at the mapping that should hold it).
    """
    node = root
    if node is None:
        return None
    constructor = yaml.constructor.SafeConstructor()
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, MappingNode):
            found = None
            for knode, vnode in node.value:  # the last duplicate wins, as in the loaded data
                if _key_equals(constructor, knode, part):
                    found = knode if (key and last) else vnode
            if found is None:
                return node
            node = found
        elif (
            isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value)
        ):
            node = node.value[part]
        else:
            return node
    return node


def _key_equals(constructor: yaml.constructor.SafeConstructor, knode: Node, part: Any) -> bool:
    if not isinstance(knode, ScalarNode):
        return False
    try:
        value = constructor.construct_object(knode)
    except Exception:
        return False
    return type(value) is type(part) and value == part


def path_at(root: Node | None, line: int, col: int) -> tuple[Any, ...] | None:
    """The data path of the innermost value spanning 1-based ``line``/``col`` (for lint
    problems, which yamllint reports by position only)."""
    if root is None:
        return None
    where = (line - 1, col - 1)
    constructor = yaml.constructor.SafeConstructor()
    path: list[Any] = []
    node = root
    for _ in range(10_000):  # bounded: each step goes one level down a finite tree
        child: tuple[Any, Node] | None = None
        if isinstance(node, MappingNode):
            for knode, vnode in node.value:
                if _spans(knode, vnode, where) and isinstance(knode, ScalarNode):
                    try:
                        child = (constructor.construct_object(knode), vnode)
                    except Exception:
                        return tuple(path)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                if _spans(item, item, where):
                    child = (i, item)
        if child is None:
            return tuple(path)
        path.append(child[0])
        node = child[1]
    return tuple(path)


def _spans(first: Node, last: Node, where: tuple[int, int]) -> bool:
    start = (first.start_mark.line, first.start_mark.column)
    end = (last.end_mark.line, last.end_mark.column)
    return start <= where <= end


def position(root: Node | None, path: Sequence[Any], *, key: bool = False) -> tuple[int, int]:
    node = node_at(root, path, key=key)
    if node is None:
        return 1, 1
    line, col = line_col(node.start_mark)
    return line or 1, col or 1

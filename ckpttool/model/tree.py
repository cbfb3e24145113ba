"""The one traversal of a checkpoint tree, in the spirit of torch's pytree, written without recursion.

A tree is made of containers (``dict`` and its subclasses, ``list``, ``tuple``, ``set``, ``frozenset`` and
:class:`~ckpttool.model.leaves.Stub`, whose children are its constructor arguments, state, items, list items
and keyword arguments) and leaves (everything else: tensor references, numbers, strings, numpy stand-ins...).
Every walker in ckpttool is one of the functions below with a small callback:

- :func:`map_tree` rebuilds the tree with leaves (or whole subtrees) replaced, keeping container types, shared
  references and cycles;
- :func:`fold_tree` computes a value bottom-up (JSON encodings, plain copies);
- :func:`iter_nodes` / :func:`iter_leaves` visit nodes in order with their key paths;
- :func:`zip_trees` walks two trees side by side;
- :func:`get_path` / :func:`set_path` follow one dotted key path.

None of them recurses in Python, so a hostile file nested a million levels deep costs memory proportional to
its size, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ckpttool.model.leaves import Stub

Path = tuple[Any, ...]
SKIP: Any = object()  # an ``enter`` callback returns it to let the traversal descend as usual
MISSING: Any = object()  # zip_trees: the key exists on one side only


class TreeError(ValueError):
    """The tree contradicts itself (a cycle where none can be, a path that does not exist)."""


def is_container(obj: Any) -> bool:
    return isinstance(obj, dict | list | tuple | set | frozenset | Stub)


def dotted(path: Path) -> str:
    """``("optimizer", "state", 0, "exp_avg")`` -> ``"optimizer.state.0.exp_avg"``."""
    return ".".join(p if isinstance(p, str) else str(p) for p in path)


def children(obj: Any, *, fields: bool = False) -> list[tuple[Any, Any]]:
    """(key, child) pairs of a container; ``[]`` for a leaf.

    A stub's children are, by default, its raw slots: arguments by index, then its state (under the key
    ``None``: it is the object's own content, not a field of it), items, list items and keyword arguments.
    With ``fields=True`` a stub is seen as the dict of its attributes (:meth:`Stub.attributes`), as config
    readers want it.
    """
    if isinstance(obj, dict):
        return list(obj.items())
    if isinstance(obj, list | tuple):
        return list(enumerate(obj))
    if isinstance(obj, set | frozenset):
        return [(None, v) for v in obj]
    if isinstance(obj, Stub):
        if fields:
            return list(obj.attributes().items())
        out: list[tuple[Any, Any]] = list(enumerate(obj.args))
        if obj.state is not None:
            out.append((None, obj.state))
        out += list(obj.items.items()) + list(enumerate(obj.list_items)) + list(obj.kwargs.items())
        return out
    return []


def _join(path: Path, key: Any) -> Path:
    return path if key is None else (*path, key)


# --- map ------------------------------------------------------------------------------------------------------
def map_tree(
    root: Any,
    leaf: Callable[[Any, Path], Any] | None = None,
    *,
    enter: Callable[[Any, Path], Any] | None = None,
    key: Callable[[Any], Any] | None = None,
    max_depth: int | None = None,
) -> Any:
    """A copy of ``root`` with every leaf replaced by ``leaf(obj, path)`` (default: itself).

    ``enter(obj, path)`` is called on every node first; anything but :data:`SKIP` replaces the node without
    descending into it. ``key`` maps dict keys. Containers keep their type (a stub is cloned as the same stub
    class); an object reached twice is mapped once, so shared references stay shared and the first path that
    reaches a leaf is the one ``leaf`` sees (like ``state_dict()`` naming tied weights). Cycles are preserved.
    A node more than ``max_depth`` keys deep raises :class:`TreeError`.
    """
    memo: dict[int, Any] = {}
    out: list[Any] = [None]
    # Work items: (obj, path, target, index) to visit, the result going to target[index]; or a callable to run
    # once the children above it are done. No closure per child: this runs on every node of every file read.
    stack: list[Any] = [(root, (), out, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if callable(item):
            item()
            continue
        obj, path, target, index = item
        oid = id(obj)
        if oid in memo:
            target[index] = memo[oid]
            continue
        if max_depth is not None and len(path) > max_depth:
            raise TreeError(f"the data nests more than {max_depth} levels deep")
        if enter is not None:
            replaced = enter(obj, path)
            if replaced is not SKIP:
                memo[oid] = target[index] = replaced
                continue
        kind = type(obj)
        if kind is dict or (kind is not list and isinstance(obj, dict)):
            new = _empty_like(obj)
            memo[oid] = target[index] = new
            for k, v in reversed(list(obj.items())):
                push((v, (*path, k), new, key(k) if key is not None else k))
        elif kind is list or isinstance(obj, list):
            new_list: list[Any] = [None] * len(obj)
            memo[oid] = target[index] = new_list
            for i in range(len(obj) - 1, -1, -1):
                push((obj[i], (*path, i), new_list, i))
        elif isinstance(obj, tuple | set | frozenset):
            values: list[Any] = [None] * len(obj)
            push(_builder(obj, values, memo, target, index))
            items = list(enumerate(obj)) if isinstance(obj, tuple) else [(None, v) for v in obj]
            for i in range(len(items) - 1, -1, -1):
                k, v = items[i]
                push((v, _join(path, k), values, i))
        elif isinstance(obj, Stub):
            clone = type(obj).__new__(type(obj))
            memo[oid] = target[index] = clone
            _push_stub(stack, obj, clone, path)
        else:
            memo[oid] = target[index] = obj if leaf is None else leaf(obj, path)
    return out[0]


def _empty_like(obj: dict[Any, Any]) -> dict[Any, Any]:
    try:
        return type(obj)() if type(obj) is not dict else {}
    except TypeError:  # a dict subclass that needs arguments
        return {}


def _set_item(container: Any, index: Any) -> Callable[[Any], None]:
    def sink(value: Any) -> None:
        container[index] = value

    return sink


class _StateSlot:
    """The target of a stub's state: ``slot[None] = v`` sets ``clone.state``."""

    def __init__(self, clone: Stub) -> None:
        self.clone = clone

    def __setitem__(self, _index: Any, value: Any) -> None:
        self.clone.state = value


def _builder(
    obj: Any, values: list[Any], memo: dict[int, Any], target: Any, index: Any
) -> Callable[[], None]:
    def build() -> None:
        new = tuple(values) if isinstance(obj, tuple) else type(obj)(values)
        memo[id(obj)] = target[index] = new

    return build


def _push_stub(stack: list[Any], obj: Stub, clone: Stub, path: Path) -> None:
    """Map a stub's five slots into ``clone``; args, items, list items and kwargs take their keys' paths."""
    args: list[Any] = [None] * len(obj.args)
    items: dict[Any, Any] = {}
    list_items: list[Any] = [None] * len(obj.list_items)
    kwargs: dict[Any, Any] = {}

    def finish() -> None:
        clone.args, clone.items, clone.list_items, clone.kwargs = tuple(args), items, list_items, kwargs

    clone.state = None
    stack.append(finish)
    for k, v in reversed(list(obj.kwargs.items())):
        stack.append((v, (*path, k), kwargs, k))
    for i in range(len(obj.list_items) - 1, -1, -1):
        stack.append((obj.list_items[i], (*path, i), list_items, i))
    for k, v in reversed(list(obj.items.items())):
        stack.append((v, (*path, k), items, k))
    if obj.state is not None:
        stack.append((obj.state, path, _StateSlot(clone), None))
    for i in range(len(obj.args) - 1, -1, -1):
        stack.append((obj.args[i], (*path, i), args, i))


# --- fold -----------------------------------------------------------------------------------------------------
@dataclass
class StubParts:
    """A stub's slots after folding, handed to ``fold_tree``'s ``build``."""

    args: list[Any]
    state: Any
    items: list[tuple[Any, Any]]
    list_items: list[Any]
    kwargs: list[tuple[Any, Any]]


def fold_tree(
    root: Any,
    leaf: Callable[[Any, Path], Any],
    build: Callable[[Any, Any, Path], Any],
    *,
    enter: Callable[[Any, Path], Any] | None = None,
    fields: bool = False,
) -> Any:
    """Compute a value bottom-up: ``leaf(obj, path)`` for leaves, ``build(container, parts, path)`` for containers,
    where ``parts`` is a list of (key, folded child) pairs for dicts (and stubs seen with ``fields=True``), a list
    of folded children for lists, tuples and sets, and :class:`StubParts` for stubs.

    ``enter(obj, path)`` may return a value (anything but :data:`SKIP`) to stand for the whole subtree. A shared
    subtree is folded once and its result reused; a cycle raises :class:`TreeError`.
    """
    memo: dict[int, Any] = {}
    active: set[int] = set()
    out: list[Any] = [None]
    stack: list[Any] = [(root, (), lambda v: out.__setitem__(0, v))]
    while stack:
        item = stack.pop()
        if callable(item):
            item()
            continue
        obj, path, sink = item
        oid = id(obj)
        if oid in memo:
            sink(memo[oid])
            continue
        if oid in active:
            raise TreeError(f"the tree refers back to itself at {dotted(path) or '<root>'}")
        if enter is not None:
            replaced = enter(obj, path)
            if replaced is not SKIP:
                sink(replaced)
                continue
        if not is_container(obj):
            value = leaf(obj, path)
            memo[oid] = value
            sink(value)
            continue
        active.add(oid)
        pairs = children(obj, fields=fields)
        results: list[Any] = [None] * len(pairs)

        def done(
            obj: Any = obj, pairs: Any = pairs, results: Any = results, path: Path = path, sink: Any = sink
        ) -> None:
            if isinstance(obj, dict) or (fields and isinstance(obj, Stub)):
                parts: Any = [(k, r) for (k, _), r in zip(pairs, results, strict=True)]
            elif isinstance(obj, Stub):
                parts = _stub_parts(obj, results)
            else:
                parts = results
            value = build(obj, parts, path)
            active.discard(id(obj))
            memo[id(obj)] = value
            sink(value)

        stack.append(done)
        for i in range(len(pairs) - 1, -1, -1):
            k, v = pairs[i]
            stack.append((v, _join(path, k), _set_item(results, i)))
    return out[0]


def _stub_parts(obj: Stub, results: list[Any]) -> StubParts:
    n_args, n_items, n_list = len(obj.args), len(obj.items), len(obj.list_items)
    i = n_args
    state = None
    if obj.state is not None:
        state, i = results[i], i + 1
    items = list(zip(obj.items, results[i : i + n_items], strict=True))
    i += n_items
    list_items = results[i : i + n_list]
    kwargs = list(zip(obj.kwargs, results[i + n_list :], strict=True))
    return StubParts(results[:n_args], state, items, list_items, kwargs)


# --- iteration ------------------------------------------------------------------------------------------------
def iter_nodes(
    root: Any,
    *,
    descend: Callable[[Any, Path], bool] | None = None,
    max_depth: int | None = None,
    fields: bool = False,
) -> Iterator[tuple[Path, Any]]:
    """Every node (containers too) in depth-first order with its key path; each container is entered once.

    ``descend(obj, path)`` may refuse to enter a container; ``max_depth`` stops below that many keys;
    ``fields`` views stubs as their attributes (see :func:`children`).
    """
    seen: set[int] = set()
    stack: list[tuple[Path, Any]] = [((), root)]
    while stack:
        path, obj = stack.pop()
        yield path, obj
        if not is_container(obj) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if max_depth is not None and len(path) >= max_depth:
            continue
        if descend is not None and not descend(obj, path):
            continue
        pairs = children(obj, fields=fields)
        for k, v in reversed(pairs):
            stack.append((_join(path, k), v))


def iter_leaves(root: Any) -> Iterator[tuple[Path, Any]]:
    """Every leaf with its key path (a leaf shared by two paths is seen at each)."""
    for path, obj in iter_nodes(root):
        if not is_container(obj):
            yield path, obj


# zip_trees' chain of enclosing container pairs: a linked list of ((x, y), parent) cells holding the objects
# themselves, so that a temporary list's id is never reused while it is on a chain
_Chain = tuple[tuple[Any, Any], Any] | None


def zip_trees(a: Any, b: Any) -> Iterator[tuple[str, Any, Any]]:
    """Walk two trees together, yielding (dotted path, a, b) for every pair of leaves and every place their
    structure differs (:data:`MISSING` stands for an absent key; two stubs of different classes yield their
    qualified names, then are compared slot by slot under ``.args``, ``.state``, ``.items``, ``.list_items``).

    Self-referencing containers (a list holding itself, which pickle and torch.save keep) end the walk where the
    same pair of containers is met again below itself; a pair shared by two paths (not a cycle) is walked at
    each path."""
    stack: list[tuple[str, Any, Any, _Chain]] = [("", a, b, None)]

    def sub(path: str, key: Any) -> str:
        return f"{path}.{key}" if path else str(key)

    def on_chain(pair: tuple[Any, Any], chain: _Chain) -> bool:
        while chain is not None:
            if chain[0][0] is pair[0] and chain[0][1] is pair[1]:
                return True
            chain = chain[1]
        return False

    while stack:
        path, x, y, chain = stack.pop()
        pair = (x, y)
        if isinstance(x, dict) and isinstance(y, dict):
            if on_chain(pair, chain):
                continue
            inner = (pair, chain)
            keys = list(x) + [k for k in y if k not in x]
            stack.extend((sub(path, k), x.get(k, MISSING), y.get(k, MISSING), inner) for k in reversed(keys))
        elif isinstance(x, list | tuple) and type(x) is type(y) and len(x) == len(y):
            if on_chain(pair, chain):
                continue
            inner = (pair, chain)
            stack.extend(
                (sub(path, i), xi, yi, inner)
                for i, (xi, yi) in reversed(list(enumerate(zip(x, y, strict=True))))
            )
        elif isinstance(x, Stub) and isinstance(y, Stub):
            if on_chain(pair, chain):
                continue
            inner = (pair, chain)
            pending = [
                (path + ".list_items", list(x.list_items), list(y.list_items), inner),
                (path + ".items", x.items, y.items, inner),
                (path + ".state", x.state, y.state, inner),
                (path + ".args", list(x.args), list(y.args), inner),
            ]
            stack.extend(pending)
            if type(x).qualname != type(y).qualname:
                yield path, type(x).qualname, type(y).qualname
        else:
            yield path, x, y


# --- one path -------------------------------------------------------------------------------------------------
def get_path(root: Any, path: str) -> Any:
    """Follow a dotted path through dicts, lists and stubs; keys containing dots are matched first.

    Raises ``KeyError`` (or ``IndexError``/``ValueError`` for a bad list index) when the path does not exist.
    """
    if not path:
        return root
    cur = root
    rest = path
    while rest:
        container: dict[Any, Any] | None = None
        if isinstance(cur, dict):
            container = cur
        elif isinstance(cur, Stub):
            container = cur.attributes()
        elif isinstance(cur, list | tuple):
            head, _, rest = rest.partition(".")
            cur = cur[int(head)]
            continue
        if container is None:
            raise KeyError(path)
        for k in sorted((k for k in container if isinstance(k, str)), key=len, reverse=True):
            if rest == k or rest.startswith(k + "."):
                cur = container[k]
                rest = rest[len(k) + 1 :]
                break
        else:
            head, _, rest = rest.partition(".")
            if head.isdigit() and int(head) in container:
                cur = container[int(head)]
            else:
                raise KeyError(path)
    return cur


def set_path(root: Any, path: str, value: Any) -> Any:
    """Put ``value`` where ``get_path(root, path)`` would find it (dotted keys matched the same way); returns the
    root (``value`` itself for the empty path). Used on materialised trees: dicts and lists."""
    if not path:
        return value
    cur = root
    rest = path
    while True:
        if isinstance(cur, list):
            head, _, tail = rest.partition(".")
            if not tail:
                cur[int(head)] = value
                return root
            cur, rest = cur[int(head)], tail
            continue
        if not isinstance(cur, dict):
            raise KeyError(path)
        keys = sorted((k for k in cur if isinstance(k, str)), key=len, reverse=True)
        if rest in keys or (rest.isdigit() and int(rest) in cur):
            cur[rest if rest in cur else int(rest)] = value
            return root
        found = next((k for k in keys if rest.startswith(k + ".")), None)
        if found is None:
            head, _, tail = rest.partition(".")
            if not (head.isdigit() and int(head) in cur) or not tail:
                raise KeyError(path)
            cur, rest = cur[int(head)], tail
            continue
        cur, rest = cur[found], rest[len(found) + 1 :]

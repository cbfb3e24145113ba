"""The layering of docs/architecture.md, checked on the code itself: imports only flow downwards and without
cycles, and nothing outside ckpttool.model walks the checkpoint tree by hand."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "ckpttool"

# Layers, lowest first. A module may import from its own layer or below, never from above.
LAYERS: list[tuple[str, ...]] = [
    (
        "ckpttool.errors",
        "ckpttool.vocab",
        "ckpttool.keys",
        "ckpttool.i18n",
        "ckpttool.datacache",
        "ckpttool.progress",
    ),
    ("ckpttool.model",),
    ("ckpttool.state_json", "ckpttool.outputs"),
    ("ckpttool.formats",),
    ("ckpttool.specs", "ckpttool.trainers"),
    ("ckpttool.configs", "ckpttool.config_keys", "ckpttool.interpret"),
    (
        "ckpttool.resume",
        "ckpttool.runs",
        "ckpttool.predict",
        "ckpttool.ops",
        "ckpttool.saving",
        "ckpttool.recipes",
        "ckpttool.api",
    ),
    ("ckpttool.render",),
    ("ckpttool.cli", "ckpttool.integrations", "ckpttool.__main__"),
]
TOP = "ckpttool"  # the package's own __init__ only re-exports lazily (PEP 562), so it sits above everything


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py LAYERS: place it")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(TOP + ".")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and (node.module.startswith(TOP + ".") or node.module == TOP)
        ):
            out.add(node.module)
    return out


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_imports_only_flow_down_the_layers() -> None:
    bad = []
    for module, deps in sorted(_graph().items()):
        if module == TOP:
            continue
        for dep in sorted(deps):
            if dep != TOP and _layer(dep) > _layer(module):
                bad.append(f"{module} (layer {_layer(module)}) imports {dep} (layer {_layer(dep)})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_import_graph_has_no_cycles() -> None:
    graph = _graph()
    modules = set(graph)

    def resolve(dep: str) -> str | None:
        while dep and dep not in modules:
            dep = dep.rpartition(".")[0]
        return dep or None

    edges = {m: {r for d in deps if (r := resolve(d)) and r != m} for m, deps in graph.items()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle of design
    for m in edges:
        edges[m] = {d for d in edges[m] if not (d.startswith(m + ".") or m.startswith(d + "."))}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(start: str) -> None:
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(edges[nxt]))))
                path.append(nxt)

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# Recursive functions that walk something other than a checkpoint tree, with the reason.
NOT_TREE_WALKERS = {
    "ckpttool/specs/model.py:items": "expands the items of a spec file (YAML), not a checkpoint",
    "ckpttool/specs/expr.py:_eval": "evaluates an expression's AST",
    "ckpttool/specs/expr.py:_check": "checks an expression's AST",
    "ckpttool/trainers/__init__.py:_convert": "reads a trainer record (YAML) into its dataclasses",
}
CONTAINER_NAMES = {"dict", "list", "tuple", "set", "frozenset", "Stub", "OrderedDict"}


def _recursive_container_walkers(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        calls_itself = any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == node.name
            for n in ast.walk(node)
        )
        checks_containers = any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"
            and any(isinstance(a, ast.Name) and a.id in CONTAINER_NAMES for a in ast.walk(n.args[1]))
            for n in ast.walk(node) if isinstance(n, ast.Call) and len(n.args) == 2
        )  # fmt: skip
        if calls_itself and checks_containers:
            found.append(f"{path.relative_to(root).as_posix()}:{node.name}")
    return found


def test_no_hand_written_tree_walkers() -> None:
    """Every walk over dicts/lists/tuples/stubs goes through ckpttool.model.tree (iterative, cycle- and
    sharing-aware); a new recursive walker fails here."""
    found = [w for p in PACKAGE.rglob("*.py") for w in _recursive_container_walkers(p)]
    unexpected = [w for w in found if w not in NOT_TREE_WALKERS]
    assert not unexpected, "hand-written recursive walkers (use ckpttool.model.tree):\n" + "\n".join(
        unexpected
    )


def test_the_walker_check_can_fail(tmp_path: Path) -> None:
    """The check itself finds a recursive walker (so the test above could fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def walk(x):\n    if isinstance(x, dict):\n        return {k: walk(v) for k, v in x.items()}\n    return x\n"
    )
    assert [w.rsplit(":", 1)[1] for w in _recursive_container_walkers(sample, tmp_path)] == ["walk"]

"""Shape expressions: a tiny, safe subset of Python evaluated over config values.

Specs are data shipped with the package, but a user may also point ckpttool at their own spec file, so
expressions are parsed with ``ast`` and walked by hand: only arithmetic, comparisons, conditionals, literals,
names, subscripts and a few whitelisted functions. Nothing is ever passed to ``eval``.

Expressions are also *composed*: a block argument or a loop variable is substituted into the expressions that
use it, so every concrete tensor dimension ends up as one expression over config keys alone
(``2 * inter_channels``). That composed form is what explanations print and what the solver inverts.
"""

from __future__ import annotations

import ast
import copy
import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from ckpttool.errors import ConfigError

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "range": range,
    "min": min,
    "max": max,
    "sum": sum,
    "prod": math.prod,
    "int": int,
    "enumerate": enumerate,
    "zip": zip,
}


# Functions detection rules may call; the caller passes their implementations in the environment.
PROBES = frozenset({"has", "dim", "count", "any_key", "lora_rank"})


class ExprError(ConfigError):
    """An expression in a spec is malformed or refers to something that does not exist."""


@lru_cache(maxsize=4096)
def parse(text: str) -> ast.expr:
    """The AST of expression ``text`` (cached). Raises ExprError for a syntax error, a construct outside the
    whitelist, a call to anything but FUNCTIONS and PROBES, or keyword arguments."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"bad expression {text!r}: {exc.msg}") from None
    _check(tree.body, str(text))
    return tree.body


_ALLOWED = (
    ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Name, ast.Constant, ast.Subscript,
    ast.Tuple, ast.List, ast.Call, ast.Load, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or, ast.Slice,
    *(_BINOPS), *(_CMPOPS),
)  # fmt: skip


def _check(node: ast.AST, text: str) -> None:
    for sub in ast.walk(node):
        if not isinstance(sub, _ALLOWED):
            raise ExprError(f"expression {text!r} uses {type(sub).__name__}, which specs may not use")
        if isinstance(sub, ast.Call) and not (
            isinstance(sub.func, ast.Name) and (sub.func.id in FUNCTIONS or sub.func.id in PROBES)
        ):
            raise ExprError(f"expression {text!r} calls something other than {', '.join(sorted(FUNCTIONS))}")
        if isinstance(sub, ast.Call) and sub.keywords:
            raise ExprError(f"expression {text!r}: keyword arguments are not supported")


def evaluate(node: ast.expr | str, env: Mapping[str, Any]) -> Any:
    """Evaluate a parsed (or textual) expression; unknown names raise ExprError naming them."""
    if isinstance(node, str):
        node = parse(node)
    return _eval(node, env)


def _eval(node: ast.expr, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise ExprError(f"unknown name {node.id!r}")
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else +v if isinstance(node.op, ast.UAdd) else not v
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, env) for v in node.values)
        return any(_eval(v, env) for v in node.values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, env) if _eval(node.test, env) else _eval(node.orelse, env)
    if isinstance(node, ast.Subscript):
        container = _eval(node.value, env)
        if isinstance(node.slice, ast.Slice):
            lo, hi, st = (
                None if s is None else _eval(s, env)
                for s in (node.slice.lower, node.slice.upper, node.slice.step)
            )
            return container[lo:hi:st]
        try:
            return container[_eval(node.slice, env)]
        except (IndexError, KeyError, TypeError) as exc:
            raise ExprError(f"{ast.unparse(node)}: {exc}") from None
    if isinstance(node, ast.Tuple | ast.List):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        fn = env.get(node.func.id) if callable(env.get(node.func.id)) else FUNCTIONS.get(node.func.id)
        if fn is None:
            raise ExprError(f"{node.func.id}() is only available in detection rules")
        return fn(*(_eval(a, env) for a in node.args))
    raise ExprError(f"cannot evaluate {ast.unparse(node)}")  # pragma: no cover - _check forbids it


def _fold(node: ast.expr, lengths: Mapping[str, int] | None = None) -> ast.expr:
    """Simplify bottom-up so composed expressions read like the model code: constant arithmetic is folded,
    ``x // 1`` and ``x * 1`` vanish, a conditional with a known test keeps its branch, literal lists are
    indexed, and ``len(v)`` of a list variable becomes its length (lists set structure, not widths)."""
    known: Mapping[str, int] = lengths or {}

    class Folder(ast.NodeTransformer):
        def generic_visit(self, n: ast.AST) -> ast.AST:
            super().generic_visit(n)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len" and n.args:
                arg = n.args[0]
                if isinstance(arg, ast.Name) and arg.id in known:
                    return ast.Constant(known[arg.id])
            if isinstance(n, ast.Subscript) and (elements := _slice_elements(n, known)) is not None:
                return elements
            if isinstance(n, ast.Call) and (chain := _reduce_chain(n)) is not None:
                return chain
            if isinstance(n, ast.IfExp) and isinstance(n.test, ast.Constant):
                return n.body if n.test.value else n.orelse
            if isinstance(n, ast.BinOp):
                left, right = n.left, n.right
                if (
                    isinstance(right, ast.Constant)
                    and right.value == 1
                    and isinstance(n.op, ast.FloorDiv | ast.Mult)
                ):
                    return left
                if isinstance(left, ast.Constant) and left.value == 1 and isinstance(n.op, ast.Mult):
                    return right
            if isinstance(
                n, ast.BinOp | ast.UnaryOp | ast.Compare | ast.IfExp | ast.BoolOp | ast.Subscript | ast.Call
            ):
                if isinstance(n, ast.Call) and not all(_is_literal(a) for a in n.args):
                    return n
                if all(
                    _is_literal(x) or (isinstance(x, ast.Load | ast.Name) and isinstance(n, ast.Call))
                    for x in _operands(n)
                ):
                    try:
                        value = _eval(n, {})
                    except Exception:
                        return n
                    if isinstance(value, int | float | str | bool) or value is None:
                        return ast.Constant(value)
            return n

    out = Folder().visit(node)
    return ast.fix_missing_locations(out)


def _slice_elements(n: ast.Subscript, known: Mapping[str, int]) -> ast.expr | None:
    """``rates[2:]`` of a list variable of known length with constant bounds -> ``[rates[2], rates[3]]``, so
    each element is an unknown the solver can target (RVC's noise convs: ``2 * prod(upsample_rates[i + 1:])``).
    None when the subscript is anything else."""
    if not (isinstance(n.value, ast.Name) and n.value.id in known and isinstance(n.slice, ast.Slice)):
        return None
    bounds: list[int | None] = []
    for b in (n.slice.lower, n.slice.upper, n.slice.step):
        if b is None:
            bounds.append(None)
        elif isinstance(b, ast.Constant) and isinstance(b.value, int) and not isinstance(b.value, bool):
            bounds.append(b.value)
        else:
            return None
    if bounds[2] == 0:
        return None
    picked = range(known[n.value.id])[bounds[0] : bounds[1] : bounds[2]]
    name = n.value.id
    return ast.List([ast.Subscript(ast.Name(name, ast.Load()), ast.Constant(k), ast.Load()) for k in picked])


def _reduce_chain(n: ast.Call) -> ast.expr | None:
    """``prod([a, b, c])`` / ``sum([a, b, c])`` over non-literal terms -> ``a * b * c`` / ``a + b + c`` (the
    empty product is 1, the empty sum 0); None for any other call."""
    if not (isinstance(n.func, ast.Name) and n.func.id in ("prod", "sum") and len(n.args) == 1):
        return None
    arg = n.args[0]
    if not isinstance(arg, ast.List | ast.Tuple) or _is_literal(arg):
        return None
    op: ast.operator = ast.Mult() if n.func.id == "prod" else ast.Add()
    if not arg.elts:
        return ast.Constant(1 if n.func.id == "prod" else 0)
    out = arg.elts[0]
    for e in arg.elts[1:]:
        out = ast.BinOp(out, op, e)
    return out


def simplify(node: ast.expr, lengths: Mapping[str, int]) -> ast.expr:
    """A simplified copy of ``node`` (see ``_fold``); ``lengths`` gives the length of each list variable."""
    import copy

    return _fold(copy.deepcopy(node), lengths)


def _operands(n: ast.AST) -> list[ast.AST]:
    return [
        c
        for c in ast.iter_child_nodes(n)
        if not isinstance(c, ast.operator | ast.cmpop | ast.unaryop | ast.boolop | ast.expr_context)
    ]


def _is_literal(n: ast.AST) -> bool:
    if isinstance(n, ast.Constant):
        return True
    if isinstance(n, ast.List | ast.Tuple):
        return all(_is_literal(e) for e in n.elts)
    return False


_TOKEN = re.compile(r"""('[^']*'|"[^"]*")|([A-Za-z_]\w*)""")


def substitute_text(text: str, mapping: Mapping[str, str]) -> str:
    """Textual substitution of names (string literals untouched); each replacement is parenthesised.

    Text rather than trees because expansion composes thousands of small expressions: a regex pass is far
    cheaper than copying ASTs, and the final text is parsed (and cached) once per distinct string.
    """
    if not mapping:
        return text

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1)
        name = m.group(2)
        return f"({mapping[name]})" if name in mapping else name

    return _TOKEN.sub(repl, text)


@lru_cache(maxsize=8192)
def simplify_text(text: str, lengths: tuple[tuple[str, int], ...]) -> str:
    """``text`` simplified and unparsed (cached); ``lengths`` as (list variable, length) pairs, hashable."""
    return ast.unparse(_fold(copy.deepcopy(parse(text)), dict(lengths)))


def literal(value: Any) -> ast.expr:
    """An AST for a plain value (loop variables, list elements)."""
    node = ast.parse(repr(value), mode="eval").body
    return node


def names(node: ast.expr) -> set[str]:
    """Free names of an expression (whitelisted functions excluded)."""
    called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - called - {"True", "False", "None"}


def atoms(node: ast.expr) -> set[str]:
    """The unknowns a solver can target: bare names, and ``name[k]`` with a constant k (a list element)."""
    out: set[str] = set()
    for n in ast.walk(node):
        if (
            isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name)
            and isinstance(n.slice, ast.Constant)
        ):
            out.add(f"{n.value.id}[{n.slice.value!s}]")
    inside = {
        id(n.value)
        for n in ast.walk(node)
        if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant)
    }
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and id(n) not in inside and n.id not in FUNCTIONS:
            out.add(n.id)
    return out - {"True", "False", "None"}


def text(node: ast.expr) -> str:
    """``node`` as source text."""
    return ast.unparse(node)

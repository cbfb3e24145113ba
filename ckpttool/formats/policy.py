"""The safety verdict of a pickle, by allow-list: what ``torch.load`` with ``weights_only`` off would import and call.

Every global a pickle names is resolved the way :class:`pickle.Unpickler` resolves it (Python 2 names mapped
for protocols < 3, dotted names followed by attribute lookup for protocols >= 4), statically, never by
importing, and classified:

- **safe**: on torch's ``weights_only`` allow-list for the oldest torch ckpttool supports (2.4, see
  :mod:`ckpttool.formats.weights_only`) or on the short list of known-benign classes below, each with why;
- **unsafe**: a known code-running callable (``os.system``, ``builtins.eval``, ``subprocess.*``,
  ``cProfile.run``, ``torch.storage._load_from_bytes``, ...), or a dotted name whose path passes through one
  (``torch`` + ``os.system`` resolves to ``os.system``);
- **unverified**: anything else. ``torch.load`` with ``weights_only`` off would import its module and call or
  reference it; ckpttool cannot tell what that does, so gates refuse such files unless the user names the
  global with ``--allow-global``.

A dotted name is safe only when its whole path is on a list. Reference: torch/_weights_only_unpickler.py
``_get_allowed_globals`` (torch 2.4.0); Python's Lib/pickle.py ``Unpickler.find_class``.
"""

from __future__ import annotations

import _compat_pickle
from typing import Any

from ckpttool.formats.weights_only import allowed_globals
from ckpttool.model import (
    SAFE,
    SKIP,
    UNSAFE,
    UNVERIFIED,
    GlobalUse,
    Safety,
    Stub,
    dotted,
    iter_nodes,
    map_tree,
)

__all__ = ["BENIGN", "SAFE", "UNSAFE", "UNVERIFIED", "GlobalUse", "Safety", "classify", "python_name"]

# Classes and functions trainers pickle that do nothing but build data when called (the benign list).
BENIGN: dict[str, str] = {
    "utils.HParams": "GPT-SoVITS/VITS config object (GPT_SoVITS/utils.py HParams): a plain attribute container, "
    "built by NEWOBJ + a __dict__ update",
    "pathlib.PosixPath": "a path object built from strings; no file is touched",
    "pathlib.WindowsPath": "a path object built from strings; no file is touched",
    "pathlib.PurePosixPath": "a path object built from strings",
    "pathlib.PureWindowsPath": "a path object built from strings",
    "pathlib.Path": "a path object built from strings",
    "pathlib._local.PosixPath": "Python 3.13's pickle name of pathlib.PosixPath",
    "pathlib._local.WindowsPath": "Python 3.13's pickle name of pathlib.WindowsPath",
    "argparse.Namespace": "a plain attribute container (training scripts save their args)",
    "numpy.core.multiarray._reconstruct": "numpy array reconstruction (numpy RNG state), data only",
    "numpy._core.multiarray._reconstruct": "numpy >= 2 name of the array reconstruction function",
    "numpy.ndarray": "numpy array class, passed to _reconstruct",
    "numpy.dtype": "numpy dtype from a type code",
    "numpy.core.multiarray.scalar": "a numpy scalar from its dtype and bytes",
    "numpy._core.multiarray.scalar": "numpy >= 2 name of the scalar constructor",
    "numpy.dtypes.UInt32DType": "numpy >= 1.25 dtype class of the RNG key array",
    "numpy.dtypes.Float64DType": "numpy >= 1.25 dtype class",
    "numpy.dtypes.Int64DType": "numpy >= 1.25 dtype class",
    "numpy.random._pickle.__randomstate_ctor": "numpy RandomState constructor (np.random.get_state objects)",
    "numpy.random._pickle.__bit_generator_ctor": "numpy BitGenerator constructor",
    "numpy.random._pickle.__generator_ctor": "numpy Generator constructor",
    "copyreg._reconstructor": "protocol 0/1 object creation: object.__new__ of the class given (itself classified)",
    "builtins.object": "the base class copyreg._reconstructor receives",
    "builtins.set": "a set",
    "builtins.frozenset": "a frozenset",
    "builtins.complex": "a complex number",
    "builtins.bytearray": "a bytearray",
    "builtins.bytes": "bytes",
    "builtins.slice": "a slice object",
    "builtins.range": "a range object",
    "builtins.list": "a list",
    "builtins.tuple": "a tuple",
    "builtins.dict": "a dict",
    "builtins.int": "an int",
    "builtins.float": "a float",
    "builtins.str": "a str",
    "builtins.bool": "a bool",
    "_codecs.encode": "str -> bytes (how protocol 2 pickles bytes)",
    "collections.OrderedDict": "an ordered dict",
    "collections.defaultdict": "a dict whose factory (classified on its own) runs only on a missing key",
    "collections.Counter": "a counter (MultiStepLR milestones)",
    "torch.torch_version.TorchVersion": "a version string (Lightning saves torch.__version__)",
    "lightning.fabric.utilities.data.AttributeDict": "Lightning's hparams dict (a dict subclass)",
    "pytorch_lightning.utilities.parsing.AttributeDict": "Lightning's hparams dict (a dict subclass)",
    "lightning_fabric.utilities.data.AttributeDict": "Lightning's hparams dict (a dict subclass)",
}
for _name in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "restore_type_tag"):
    BENIGN[f"torch.jit._pickle.{_name}"] = "TorchScript's list and type-tag helpers"
for _name in ("FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor", "ByteTensor"):
    BENIGN[f"torch.{_name}"] = "a legacy tensor type"

# Callables that run code, touch files or the network, import modules or reach them: named full paths...
UNSAFE_NAMES: frozenset[str] = frozenset({
    *(f"builtins.{n}" for n in (
        "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals", "locals",
        "vars", "input", "breakpoint", "help", "exit", "quit", "memoryview", "type", "super", "print", "dir",
        "__build_class__", "classmethod", "staticmethod", "property", "apply", "execfile", "reload", "file",
    )),
    "torch.load", "torch.save", "torch.compile", "torch.from_file", "torch.storage._load_from_bytes",
    "torch.fx.graph_module.reduce_graph_module", "torch.fx.graph_module.reduce_package_graph_module",
    "torch.fx.graph_module.reduce_deploy_graph_module", "torch.fx.graph_module._forward_from_src",
    "torch.fx.graph_module._deserialize_graph_module",
    "numpy.load", "numpy.loadtxt", "numpy.fromfile", "numpy.save", "numpy.genfromtxt",
    "io.open", "_io.open", "io.FileIO", "_io.FileIO", "codecs.open", "io.open_code",
    "types.FunctionType", "types.CodeType", "types.ModuleType", "types.MethodType", "types.LambdaType",
    "operator.attrgetter", "operator.methodcaller", "_operator.attrgetter", "_operator.methodcaller",
    "functools.reduce", "_functools.reduce", "logging.config.dictConfig", "logging.config.fileConfig",
    "logging.config.listen", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "typing._eval_type",
    "typing.ForwardRef",
})  # fmt: skip
# ...and modules (with everything under them).
UNSAFE_MODULES: tuple[str, ...] = (
    "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "shutil", "socket", "_socket", "ctypes",
    "_ctypes", "pty", "runpy", "importlib", "pkgutil", "zipimport", "pickle", "_pickle", "dill", "joblib",
    "cloudpickle", "marshal", "code", "codeop", "pdb", "bdb", "pydoc", "timeit", "cProfile", "profile",
    "_lsprof", "trace", "webbrowser", "multiprocessing", "_multiprocessing", "asyncio", "platform", "commands",
    "popen2", "tempfile", "signal", "_signal", "threading", "_thread", "gc", "inspect", "cffi", "urllib",
    "http", "ftplib", "smtplib", "telnetlib", "requests", "aiohttp", "sqlite3", "_sqlite3", "shelve", "dbm",
    "site", "setuptools", "distutils", "pip", "builtins.__import__", "torch.hub", "torch.jit", "torch._C",
    "torch.ops", "torch._ops", "torch.classes", "torch.package", "torch.utils.cpp_extension", "torch._dynamo",
    "torch._inductor", "torch.serialization", "torch.fx", "torch.distributed.rpc", "torch.multiprocessing",
    "numpy.f2py", "numpy.distutils", "numpy.testing", "numpy.lib.npyio", "numpy.ctypeslib", "numpy.lib.format",
    "logging.config", "sympy", "IPython", "readline", "rlcompleter", "ensurepip", "venv", "xmlrpc",
    "socketserver", "imaplib", "poplib", "nntplib", "mailbox", "wsgiref", "uuid", "sysconfig", "crypt",
    "resource", "fcntl", "mmap", "select", "selectors", "termios", "tty", "getpass", "zipfile", "tarfile",
    "glob", "fnmatch", "linecache", "tokenize", "ast", "dis", "symtable", "compileall", "py_compile",
)  # fmt: skip
# Never unsafe although under an unsafe module prefix: names legitimate checkpoints contain.
UNDER_UNSAFE_BUT_SAFE = frozenset({"torch.serialization._get_layout"} | {
    f"torch.jit._pickle.{n}" for n in ("build_intlist", "build_tensorlist", "build_doublelist",
                                       "build_boollist", "restore_type_tag")})  # fmt: skip


def python_name(module: str, name: str, proto: int) -> tuple[str, str]:
    """(module, name) as ``pickle.Unpickler.find_class`` sees them: Python 2 names are mapped (``__builtin__``
    -> ``builtins``, ``copy_reg`` -> ``copyreg``) for protocols < 3 (Lib/pickle.py find_class)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def classify(module: str, name: str) -> tuple[str, str]:
    """(verdict, why) for global ``module.name`` (after name mapping).

    The module part is imported as named; the name part may be a dotted attribute path (protocol >= 4), and
    whatever it passes through counts: ``('torch', 'os.system')`` reaches ``os.system`` through ``torch.os``.
    """
    full = f"{module}.{name}"
    if full in UNDER_UNSAFE_BUT_SAFE:
        return SAFE, "on torch's weights_only allow-list"
    attrs = name.split(".")
    if any(p.startswith("__") and p.endswith("__") for p in attrs):
        return UNSAFE, "reaches a dunder attribute (a way out of the named object)"
    if full in UNSAFE_NAMES:
        return UNSAFE, f"{full} runs code or reaches files"
    hit = next((m for m in UNSAFE_MODULES if _under(module, m) or _under(full, m)), None)
    if hit is not None:
        return UNSAFE, f"{hit} can run code, touch files or the network"
    for i in range(len(attrs) - 1):  # dotted names: every attribute path inside the name
        tail = ".".join(attrs[i:])
        if tail in UNSAFE_NAMES or any(_under(tail, m) for m in UNSAFE_MODULES):
            return UNSAFE, f"the dotted name reaches {tail}"
    if full in allowed_globals("2.4"):
        return SAFE, "on torch's weights_only allow-list (torch 2.4)"
    if full in BENIGN:
        return SAFE, BENIGN[full]
    return UNVERIFIED, "not on ckpttool's allow-list"


def stub_globals(root: Any) -> list[tuple[str, str, str, str]]:
    """(dotted path, global, verdict, why) of every stub in ``root`` whose global is not safe: what a writer
    would name again in its output pickle."""
    out = []
    for path, node in iter_nodes(root):
        if isinstance(node, Stub):
            module, name = type(node).module, type(node).name
            verdict, why = classify(module, name)
            if verdict != SAFE:
                out.append((dotted(path), f"{module}.{name}", verdict, why))
    return out


def flatten_unverified(root: Any, allow: frozenset[str] = frozenset()) -> tuple[Any, list[str]]:
    """A copy of ``root`` in which every stub of a global that is not safe (and not in ``allow``) is replaced by
    plain data: its attributes as a dict, else its arguments as a list, else its name as a string. Returns the
    copy and one line per replaced value."""
    changed: list[str] = []

    def enter(node: Any, path: tuple[Any, ...]) -> Any:
        if not isinstance(node, Stub):
            return SKIP
        full = f"{type(node).module}.{type(node).name}"
        if full in allow or classify(type(node).module, type(node).name)[0] == SAFE:
            return SKIP
        attrs = node.attributes()
        plain: Any = dict(attrs) if attrs else list(node.args) if node.args else f"<{full}>"
        changed.append(f"{dotted(path) or '<root>'}: {full} -> {type(plain).__name__}")
        return plain

    return map_tree(root, enter=enter), changed

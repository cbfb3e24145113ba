"""The tree every reader produces and every operation consumes: plain data, no torch.

``leaves`` holds every leaf type a checkpoint tree can contain (tensor references, inert stubs, numpy arrays,
torch dtypes and devices, values read on demand); ``tree`` holds the one traversal that every walker uses;
``checkpoint`` the :class:`Checkpoint` a format reader returns. A new leaf type is taught here, once.
"""

from ckpttool.model.checkpoint import Checkpoint
from ckpttool.model.leaves import (
    DTYPE_SIZES,
    DcpStorage,
    DeferredValue,
    HugeInt,
    NumpyArray,
    NumpyDType,
    RangeStorage,
    StorageRef,
    Stub,
    TensorInfo,
    TorchDevice,
    TorchDtype,
    ZipStorage,
    is_stub,
    stub_class,
)
from ckpttool.model.safety import SAFE, UNSAFE, UNVERIFIED, GlobalUse, Safety
from ckpttool.model.tree import (
    MISSING,
    SKIP,
    TreeError,
    children,
    dotted,
    fold_tree,
    get_path,
    iter_leaves,
    iter_nodes,
    map_tree,
    set_path,
    zip_trees,
)

__all__ = [
    "DTYPE_SIZES",
    "MISSING",
    "SAFE",
    "SKIP",
    "UNSAFE",
    "UNVERIFIED",
    "Checkpoint",
    "DcpStorage",
    "DeferredValue",
    "GlobalUse",
    "HugeInt",
    "NumpyArray",
    "NumpyDType",
    "RangeStorage",
    "Safety",
    "StorageRef",
    "Stub",
    "TensorInfo",
    "TorchDevice",
    "TorchDtype",
    "TreeError",
    "ZipStorage",
    "children",
    "dotted",
    "fold_tree",
    "get_path",
    "is_stub",
    "iter_leaves",
    "iter_nodes",
    "map_tree",
    "set_path",
    "stub_class",
    "zip_trees",
]

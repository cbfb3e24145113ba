"""Architecture specs: for a model family and a config, which tensors exist and what shape each has.

The facts live in YAML files under ``data/`` (docs/specs.md); this package expands them, recognises a family
from a state dict's shapes, solves for the config values those shapes imply, and checks a config against them.
"""

from ckpttool.specs.model import Spec, TensorSpec, builtin_specs, get_spec, load_spec_file

__all__ = ["Spec", "TensorSpec", "builtin_specs", "get_spec", "load_spec_file"]

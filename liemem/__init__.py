"""liemem: Lie-access neural memory for PyTorch.

The geometry lives in the sibling packages `manifolds` (key spaces) and `groups` (Lie groups acting on them);
this package builds memories, heads, controllers and models on top of those interfaces.
`build_model(name, vocab_size, **overrides)` makes any of them by name; `model_names()` lists the names.
"""

from .config import ConfigError
from .factory import build_model, model_config, model_names
from .models import SequenceModel

__version__ = "0.1.0"

__all__ = ["ConfigError", "SequenceModel", "build_model", "model_config", "model_names"]

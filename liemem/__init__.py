"""liemem: Lie-access neural memory for PyTorch.

The geometry lives in the sibling packages `manifolds` (key spaces) and `groups` (Lie groups acting on them);
this package builds memories, controllers, models, tasks and tools on top of those interfaces.
"""

__version__ = "0.1.0"

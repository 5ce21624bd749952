"""Lie groups acting on key spaces: the head movements of Lie-access memory, with exp and log.

`get(name, **kwargs)` builds a registered group; `names()` lists them. Subclass `LieGroup` with a name to
add one: `class MyGroup(LieGroup, name="mine")`.
"""

from .base import LieGroup
from .mobius import Mobius
from .product import ProductGroup
from .registry import get, names
from .se2 import SE2
from .se3 import SE3
from .so3 import SO3
from .torus import TorusTranslation
from .translation import Translation

__all__ = ["SE2", "SE3", "SO3", "LieGroup", "Mobius", "ProductGroup", "TorusTranslation", "Translation", "get", "names"]

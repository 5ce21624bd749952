"""Key spaces for Lie-access memory: manifolds whose points address memory slots, built on geoopt."""

from .base import ChordalKeySpace, KeySpace
from .euclidean import Euclidean
from .poincare import PoincareBall
from .product import ProductSpace
from .sphere import Sphere
from .torus import Torus

__all__ = ["ChordalKeySpace", "Euclidean", "KeySpace", "PoincareBall", "ProductSpace", "Sphere", "Torus"]

"""Geometry: deepxde primitives and CSG for sampling, pdeml's torch SDFs for constraints."""

from .base import METHODS, AbstractGeometry
from .csg import Difference, Intersection, Union
from .mesh import Mesh
from .primitives import (
    Cuboid,
    Disk,
    Ellipse,
    Hypercube,
    Hypersphere,
    Interval,
    Polygon,
    Rectangle,
    Sphere,
    Triangle,
)

__all__ = [
    "AbstractGeometry",
    "METHODS",
    "Interval",
    "Rectangle",
    "Cuboid",
    "Hypercube",
    "Disk",
    "Sphere",
    "Hypersphere",
    "Ellipse",
    "Polygon",
    "Triangle",
    "Union",
    "Intersection",
    "Difference",
    "Mesh",
]

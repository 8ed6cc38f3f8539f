"""Export: VTK files (meshio) and PNG pictures (matplotlib)."""

from .mesh import mesh
from .plots import plot_field, plot_history
from .vtk import export, point_data

__all__ = ["mesh", "export", "point_data", "plot_field", "plot_history"]

"""Fields on regular grids as VTK ImageData (``.vti``), one cell value per grid cell.

ParaView opens the file directly. Arrays are indexed ``[i, j(, k)]`` with ``i`` along x, written
in VTK's x-fastest order; :func:`read_image_data` reads them back (tests, scripts).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .._validate import fail


def write_image_data(path, arrays: dict, spacing=None, origin=None) -> Path:
    """Write ``{name: (nx, ny[, nz]) array}`` as cell data on the unit-spaced (or ``spacing``)
    grid."""
    if not arrays:
        fail("arrays", arrays, "is empty", "pass at least one named grid array")
    shapes = {np.shape(a) for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) not in (2, 3):
        fail(
            "arrays",
            {k: np.shape(v) for k, v in arrays.items()},
            "must be 2-D or 3-D and share one shape",
            "pass arrays of the grid's shape",
        )
    shape = next(iter(shapes)) + (1,) * (3 - len(next(iter(shapes))))
    spacing = tuple(spacing or (1.0,) * 3) + (1.0,) * (3 - len(spacing or (1.0,) * 3))
    origin = tuple(origin or (0.0,) * 3) + (0.0,) * (3 - len(origin or (0.0,) * 3))
    extent = " ".join(f"0 {n}" for n in shape)
    root = ET.Element("VTKFile", type="ImageData", version="0.1", byte_order="LittleEndian")
    image = ET.SubElement(
        root,
        "ImageData",
        WholeExtent=extent,
        Origin=" ".join(map(str, origin)),
        Spacing=" ".join(map(str, spacing)),
    )
    piece = ET.SubElement(image, "Piece", Extent=extent)
    cells = ET.SubElement(piece, "CellData", Scalars=next(iter(arrays)))
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64).reshape(shape)
        arr = ET.SubElement(cells, "DataArray", type="Float64", Name=name, format="ascii")
        arr.text = " ".join(f"{v:.17g}" for v in a.ravel(order="F"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, xml_declaration=True, encoding="utf-8")
    return path


def read_image_data(path) -> dict[str, np.ndarray]:
    """The cell arrays of a ``.vti`` written by :func:`write_image_data`, as (nx, ny[, nz])."""
    image = ET.parse(path).getroot().find("ImageData")
    extent = None if image is None else image.get("WholeExtent")
    if image is None or extent is None:
        fail("path", str(path), "is not a VTK image file (no ImageData extent)", "pass a .vti file")
    ext = [int(v) for v in extent.split()]
    shape = tuple(ext[2 * i + 1] - ext[2 * i] for i in range(3))
    out = {}
    for arr in image.iter("DataArray"):
        a = np.array((arr.text or "").split(), dtype=float).reshape(shape, order="F")
        out[str(arr.get("Name"))] = a[..., 0] if shape[2] == 1 else a
    return out

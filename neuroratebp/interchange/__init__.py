"""Model interchange through NIR (https://neuroir.org): export, import, plain-data graphs.

``export_nir``/``write_nir`` turn a trained network into a NIR graph/file whose standard nodes
reproduce it under forward Euler at the recorded ``dt``; ``import_nir`` turns a NIR graph into a
runnable network plus a run config. The mapping is documented in :mod:`.discretisation`.
"""
from .discretisation import DEFAULT_DT
from .export import ApproximationWarning, export_nir, write_nir
from .imports import import_nir, read_nir

__all__ = ["DEFAULT_DT", "ApproximationWarning", "export_nir", "import_nir", "read_nir",
           "write_nir"]

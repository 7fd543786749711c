"""Video backbones by name (``BACKBONES``, ``build_backbone``): the paper's four as the authors build
them (r21d_10, c3d, r3d_18, s3dg; one module each) and torchvision's r2plus1d_18 as an extra one."""
from . import c3d, r3d, r21d, s3dg, tv_r2plus1d  # noqa: F401  (each registers its backbone)
from .base import BACKBONES, INITS, Backbone, authors_init_, build_backbone, initialise, linear_head, mlp_head

__all__ = ["BACKBONES", "INITS", "Backbone", "authors_init_", "build_backbone", "initialise", "linear_head", "mlp_head"]

"""hiclr: label-free 3D semantic segmentation by hierarchical intra-modal correlation learning."""

__version__ = "0.1.0"

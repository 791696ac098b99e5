"""`hiclr train`: hierarchical intra-modal correlation learning (paper §3).

Modules: ``config`` (TrainConfig, --stages), ``schedule`` (which losses are on), ``sampler`` (M points
per scene ∝ segment size), ``data`` (scenes, augmentation), ``anchors`` (frozen class anchors),
``model`` (3D network + transformers + losses), ``checkpoint``, ``loop`` (optimisation, run folder,
resume, DDP, AMP), ``export`` (the inference model file).
"""

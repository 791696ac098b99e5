"""Vision–language labelers: MaskCLIP dense labels through open_clip (``maskclip``), prompt templates
(``prompts``), cached text embeddings (``text``) and the synthetic-only oracle (``oracle``).

Nothing here imports open_clip at module import time; it is imported where a model is built.
"""

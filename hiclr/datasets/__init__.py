"""Dataset converters into the hiclr store: synthetic rooms, ScanNet v2, nuScenes.

Submodules are imported on use (``from hiclr.datasets.synthetic import prepare_synthetic``), so
importing this package pulls in nothing heavy.
"""

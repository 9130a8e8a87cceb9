"""EntroAD: zero-shot anomaly detection with structural-entropy routing on a frozen CLIP ViT.

The library never imports Prefect; orchestration lives in ``flows/``.
"""

__version__ = "0.1.0"

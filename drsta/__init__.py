"""drsta: Diversity Regularized Spatiotemporal Attention for video person re-identification.

The library is plain PyTorch/NumPy and knows nothing of Ray or MLflow; `pipelines/` wires it to them.
"""

__version__ = "0.1.0"

"""Entry points that wire the `drsta` library to Ray and MLflow; each module runs as `python -m pipelines.X`."""

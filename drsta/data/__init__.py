"""Tracklet data: frame sampling (more — readers, manifest, decoding — lands with the data pipeline)."""

"""Batch scoring: a registered version scores a CSV/Parquet table in chunks, after the checks serving makes.

``tables`` reads a table chunk by chunk and writes one atomically; ``score`` resolves the version, checks the
table against its spec and scores it with the gateway's :class:`~driftloop.serving.versions.ServedVersion`;
``monitor_feed`` posts a scored table to the drift monitor as payload events, so batch use is watched too.
"""

# Rows scored at a time: bounds memory (about 1 KB per row of a 15-feature table while it is scored).
DEFAULT_CHUNK_ROWS = 50_000

"""Component: score a table with a registered version (batch scoring)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def score_table(
    data_uri: str,
    registry_uri: str,
    model_name: str,
    scored: Output[Dataset],
    version: int = 0,
    alias: str = "production",
    chunk_rows: int = 50000,
    with_features: bool = False,
) -> int:
    """Scores a CSV/Parquet table (path or s3:// URI) in chunks with a registered version — ``version``, or when it
    is 0 the one ``alias`` points at — after the checks serving makes (signature, checksums, library versions,
    the spec's feature columns).

    Returns:
        scored: The scored table as Parquet: row id, prediction (a class label, or a regression's number), a
            classifier's probability of each class, the version and, with ``with_features``, the typed features
            (what the drift monitor's ingest-batch needs).
        Output: Rows scored.
    """
    from driftloop.batch.score import score_table as score
    from driftloop.data import PARQUET

    summary = score(data_uri, scored.path, registry_uri, model_name, version=version or None,
                    alias=None if version else alias, chunk_rows=chunk_rows, with_features=with_features,
                    output_format=PARQUET)
    scored.metadata.update({"rows": summary.rows, "model": summary.model, "version": summary.version,
                            "source": data_uri, "format": PARQUET})
    return summary.rows

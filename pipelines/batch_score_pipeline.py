"""The batch-scoring pipeline: one step that scores a table with a registered version.

Run ``python pipelines/batch_score_pipeline.py`` (or ``driftloop compile``) to regenerate batch_score_pipeline.yaml;
a test keeps the two in step. The step reads the data and the registry, so it gets the S3 Secret and the
registry's public key as the CT pipeline's readers do (never the signing key: it writes nothing to the registry).
Its output is the scored table, a Dataset artifact KFP stores with the run.
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Dataset

from driftloop.components.score_table import score_table
from driftloop.image import PROJECT_IMAGE
from driftloop.pipelines.ct_pipeline import IO_RETRIES, with_registry_keys, with_s3_credentials

PIPELINE_NAME = "driftloop-batch-score"
IR_PATH = Path(__file__).with_suffix(".yaml")
DESCRIPTION = ("driftloop batch scoring: score a CSV/Parquet table with a registered version (by number or alias) "
               "after the checks serving makes; the scored table is the run's Dataset.")


def build_batch_score_pipeline(image: str = PROJECT_IMAGE):
    """Builds the pipeline, its step on ``image``."""

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def batch_score_pipeline(data_uri: str, model_name: str, registry_uri: str, version: int = 0,
                             alias: str = "production", chunk_rows: int = 50000,
                             with_features: bool = False) -> Dataset:
        """Scores one table.

        Args:
            data_uri: The table: CSV or Parquet, a path or s3:// URI.
            model_name: The registered model.
            registry_uri: The registry: s3://bucket/prefix (or a directory locally).
            version: The version to score with; 0 means the one the alias points at.
            alias: The alias whose version scores when no version is given.
            chunk_rows: Rows scored at a time (bounds the step's memory).
            with_features: Write the typed features too (for the drift monitor's ingest-batch).
        """
        task = score_table(data_uri=data_uri, registry_uri=registry_uri, model_name=model_name, version=version,
                           alias=alias, chunk_rows=chunk_rows, with_features=with_features)
        task.set_display_name("score table")
        # It reads data at a URI and an alias that moves: a cached result would score with a stale version.
        task.set_caching_options(False)
        task.set_retry(num_retries=IO_RETRIES, backoff_duration="10s")
        with_s3_credentials(task)
        with_registry_keys(task, writes=False)
        task.container_spec.image = image
        return task.outputs["scored"]

    return batch_score_pipeline


batch_score_pipeline = build_batch_score_pipeline()


def compile_batch_score_pipeline(path: "str | Path" = IR_PATH, image: str = PROJECT_IMAGE) -> Path:
    """Compiles the pipeline to Kubeflow IR YAML at ``path``, its step on ``image``."""
    compiler.Compiler().compile(build_batch_score_pipeline(image=image), str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_batch_score_pipeline())

"""driftloop: continuous training for tabular models on Kubeflow Pipelines and KServe."""

__version__ = "0.1.0"

"""Deployment targets: the local gateway follows registry aliases; KServe gets InferenceServices."""

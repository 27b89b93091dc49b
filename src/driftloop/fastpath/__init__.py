"""The verified fast scoring path: a version's Pipeline compiled to ONNX at registration, served by onnxruntime
only where it was proven to answer what the Pipeline answers.

- :mod:`.convert` compiles the Pipeline (skl2onnx, onnxmltools for XGBoost, an own converter for histogram
  gradient boosting's categorical splits);
- :mod:`.agreement` accepts the graph only if it agrees with the Pipeline on the version's rows, and writes the
  record that goes into the version's metadata;
- :mod:`.scorer` is the scoring path itself: typed rows in, the Pipeline's answers out.
"""

"""Serving: a local InferenceService gateway on KServe's model server, with canary traffic splitting."""

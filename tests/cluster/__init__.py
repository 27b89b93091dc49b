"""A loopback emulation of KServe's control plane (Serverless and Standard modes) for the test suite.

No Kubernetes runs here, so tests that roll out KServe canaries talk to this instead: a Kubernetes API server for
KServe's CRDs (``api_server.py``, ``store.py``, ``schema.py``, ``webhooks.py``), the KServe controller
(``controller.py``, ``isvc_status.py``, ``runtimes.py``), Knative Serving (``knative.py``) and Deployments
(``deployments.py``) whose pods are real processes (``pods.py``, ``storage_initializer.py``), an ingress with
queue-proxy metrics and KServe's logger agent in the data path (``ingress.py``, ``queue_proxy.py``,
``logger_agent.py``), and Prometheus file_sd targets (``scrape_targets.py``). Every module names the upstream
files it follows. ``cluster.KServeCluster`` puts them together; ``fixtures.py`` has the pytest fixtures.
"""

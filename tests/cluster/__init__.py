"""A loopback emulation of KServe's control plane (Serverless and Standard modes) for the test suite.

No Kubernetes runs here, so tests that roll out KServe canaries talk to this instead: a Kubernetes API server for
KServe's CRDs (``api_server.py``, ``store.py``, ``schema.py``, ``webhooks.py``), the KServe controller
(``controller.py``, ``isvc_status.py``, ``runtimes.py``), Knative Serving (``knative.py``) and Deployments
(``deployments.py``) whose pods are real processes (``pods.py``, ``storage_initializer.py``), an ingress with
queue-proxy metrics and KServe's logger agent in the data path (``ingress.py``, ``queue_proxy.py``,
``logger_agent.py``: binary CloudEvents over HTTP, or batches written to S3 for ``logger.storage``,
``blob_store.py``), and Prometheus file_sd targets (``scrape_targets.py``). Every module names the upstream
files it follows. ``cluster.KServeCluster`` puts them together; ``fixtures.py`` has the pytest fixtures
(``kserve_cluster``, ``kserve_namespace``, ``event_sink``; tests/integration/conftest.py exposes them).

Using it from a test::

    api = CustomObjectsApi(kserve_cluster.api_client())          # or write_kubeconfig(path) + load_kube_config
    api.create_namespaced_custom_object(..., driftloop_serving_runtime(kserve_namespace))  # the project's manifest
    api.create_namespaced_custom_object(..., inference_service)  # storageUri in the s3_server's buckets
    kserve_cluster.wait_settled()                                 # controllers idle, no pod starting
    httpx.post(f"{kserve_cluster.ingress_url}/v1/models/churn:predict",
               headers={"Host": kserve_cluster.host(kserve_namespace, "churn")}, json=...)
    kserve_cluster.scrape_targets.move_to(prometheus.targets_dir / "kserve.json")  # a real Prometheus scrapes

Faithful where the project depends on it (each module says how, with its source); knowingly left out: server-side
apply, admission of other kinds (Secrets, ServiceAccounts: the cluster has one set of S3 settings), explainers and
transformers, multi-model and multi-node serving, gRPC routing, Knative's gradual rollout (``rollout-duration``),
autoscaling beyond one pod per revision or Deployment, container restarts (a crashed container stays down), and
the delays of scale-to-zero.
"""

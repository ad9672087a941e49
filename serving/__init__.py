"""Run NVIDIA Triton Inference Server on a gattanet model repository.

``launcher`` finds and starts the real ``tritonserver`` (PATH or the nvidia-pytriton build);
``default_model`` exports the bundled checkpoint on first use; ``watchdog`` notices dead
python-backend stubs; ``cli`` is ``gatta-serve``. Deployment assets: ``monitoring/``
(Prometheus, Grafana, compose), ``k8s/`` and ``docker-entrypoint.sh``.
"""

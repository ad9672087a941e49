"""Run NVIDIA Triton Inference Server on a gattanet model repository.

``launcher`` finds and starts the real ``tritonserver`` (PATH or the nvidia-pytriton build);
``devices`` decides where the models run on this host (a GPU model's CPU twin without a GPU);
``shutdown`` drains the models before Triton stops; ``admin_key`` never lets a default key
through; ``default_model`` exports the bundled checkpoint on first use; ``watchdog`` notices
dead python-backend stubs; ``cli`` is ``gatta-serve``. Deployment assets: ``monitoring/``
(Prometheus, Grafana, compose), ``k8s/`` and ``docker-entrypoint.sh``.
"""

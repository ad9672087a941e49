# GPU serving image: NVIDIA Triton 24.10 (Triton 2.51, the version the tests run against) running
# the python flavour on onnxruntime-gpu (CUDA execution provider, KIND_GPU instances) under
# gatta-serve: the model code, tensor contract, metrics, drain and watchdog the tests exercise.
#   docker build -t gattanet .
#   docker run --gpus all --shm-size 1g -p 8000:8000 -p 8001:8001 -p 8002:8002 gattanet
# Another checkpoint: docker build --build-arg CKPT=runs/head/best.pt -t gattanet .

# Stage 1: export the checkpoint to a verified ONNX model repository (CPU is enough), and build
# the gattanet wheel (gatta-serve, gatta-client) for the runtime stage.
FROM python:3.11-slim AS export
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gatta/ gatta/
COPY training/ training/
COPY export/ export/
COPY serving/ serving/
COPY client/ client/
COPY bench/ bench/
COPY models/ models/
# hadolint ignore=DL3013
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir ".[export]" \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .
ARG CKPT=models/cifar10-toy-d16.pt
RUN gatta-export --ckpt "${CKPT}" --out /models --flavor python --device gpu --max-batch 64

# Stage 2: Triton with the repository baked in.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
COPY --from=export /wheels /wheels
# onnxruntime-gpu and never onnxruntime as well: both wheels install the same `onnxruntime`
# module (docs/serving.md). 1.19.2 is the ONNX Runtime of Triton 24.10's own onnxruntime
# backend, built for its CUDA 12 / cuDNN 9. The python-backend stub runs this python3.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "numpy<2" pillow==11.0.0 onnxruntime-gpu==1.19.2 "psutil>=5.9" /wheels/gattanet-*.whl \
    && rm -rf /wheels \
    && mkdir -p /run/gattanet && chown 1000:1000 /run/gattanet
COPY --from=export --chown=1000:1000 /models /models
COPY --chmod=755 serving/docker-entrypoint.sh /usr/local/bin/gatta-entrypoint
# triton-server, the image's non-root user
USER 1000:1000
EXPOSE 8000 8001 8002
ENV MODEL_REPOSITORY=/models
# Liveness that means it: one tiny inference (Triton keeps saying ready when a stub died).
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 \
    CMD ["gatta-client", "health", "--infer", "--timeout", "10"]
ENTRYPOINT ["/usr/local/bin/gatta-entrypoint"]

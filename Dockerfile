# GPU serving image: NVIDIA Triton (24.10 = Triton 2.51, the version the tests run against)
# hosting the native onnxruntime flavour of a gattanet model.
#   docker build -t gattanet .
#   docker run --gpus all --shm-size 1g -p 8000:8000 -p 8001:8001 -p 8002:8002 gattanet
# Another checkpoint: docker build --build-arg CKPT=runs/head/best.pt -t gattanet .

# Stage 1: export the checkpoint to a verified ONNX model repository (CPU is enough).
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
    && pip install --no-cache-dir ".[export]"
ARG CKPT=models/cifar10-toy-d16.pt
RUN gatta-export --ckpt "${CKPT}" --out /models --flavor onnxruntime --max-batch 64

# Stage 2: Triton with the repository baked in.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
# The encoded-image preprocessing model (python backend) decodes with Pillow.
RUN pip install --no-cache-dir "numpy<2" pillow==11.0.0
COPY --from=export --chown=1000:1000 /models /models
COPY --chmod=755 serving/docker-entrypoint.sh /usr/local/bin/gatta-entrypoint
# triton-server, the image's non-root user
USER 1000:1000
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "http://localhost:8000/v2/health/ready"]
# Set a real key at run time: docker run -e GATTA_ADMIN_KEY=... (operator APIs need it).
ENV GATTA_ADMIN_KEY=change-me MODEL_REPOSITORY=/models
ENTRYPOINT ["/usr/local/bin/gatta-entrypoint"]

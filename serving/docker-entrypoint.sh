#!/bin/sh
# Container entry point: Triton on all interfaces (the container's choice), model control
# "none" (no remote loading), operator APIs behind the admin key. Extra args pass through.
set -eu
RESTRICTED="shared-memory,trace,logging,model-repository:admin-key=${GATTA_ADMIN_KEY:?set GATTA_ADMIN_KEY}"
exec tritonserver --model-repository="${MODEL_REPOSITORY:-/models}" --model-control-mode=none \
    --http-restricted-api="$RESTRICTED" --grpc-restricted-protocol="$RESTRICTED" \
    --allow-metrics=true --allow-gpu-metrics=true --metrics-interval-ms=2000 \
    --metrics-config=summary_latencies=true \
    --exit-timeout-secs=30 "$@"

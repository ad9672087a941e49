#!/bin/sh
# Container entry point: gatta-serve, the launcher the tests run, over NVIDIA's tritonserver.
# All interfaces (the container's choice), the baked repository, the stub watchdog, drain-then-
# stop on SIGTERM, and an admin key that is never a default: $GATTA_ADMIN_KEY, else the key file
# (a mounted secret), else a random key written to that file (docker exec ... cat it).
# Triton's log goes to stdout. Extra arguments pass through to gatta-serve (the last one wins).
set -eu
exec gatta-serve --host 0.0.0.0 --model-repository "${MODEL_REPOSITORY:-/models}" \
    --admin-key-file "${GATTA_ADMIN_KEY_FILE:-/run/gattanet/admin-key}" --log-file /dev/stdout "$@"

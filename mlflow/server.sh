#!/usr/bin/env bash
# Launch an MLflow tracking + registry server for chromaflow. Loopback only by default.
#
#   mlflow/server.sh                                  # http://127.0.0.1:5000, state in runs/mlflow-server/
#   MLFLOW_HOST=0.0.0.0 MLFLOW_ALLOWED_HOSTS=mlflow.example.org mlflow/server.sh   # expose deliberately
#
# Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 (or pass --tracking-uri to chromaflow steps).
# Environment overrides (defaults in brackets):
#   MLFLOW_HOST [127.0.0.1]   MLFLOW_PORT [5000]   MLFLOW_WORKERS [2]
#   MLFLOW_STATE_DIR [runs/mlflow-server]
#   MLFLOW_BACKEND_STORE_URI [sqlite:///$MLFLOW_STATE_DIR/mlflow.db]
#   MLFLOW_ARTIFACTS_DESTINATION [$MLFLOW_STATE_DIR/artifacts]  (served through the server: --serve-artifacts)
#   MLFLOW_ALLOWED_HOSTS [127.0.0.1:$PORT,localhost:$PORT,127.0.0.1,localhost]  (uvicorn checks the Host header)
#   MLFLOW_BIN [mlflow from .venv/bin, else PATH]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
WORKERS="${MLFLOW_WORKERS:-2}"
STATE="${MLFLOW_STATE_DIR:-$HERE/runs/mlflow-server}"
BACKEND="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$STATE/mlflow.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS_DESTINATION:-$STATE/artifacts}"
ALLOWED="${MLFLOW_ALLOWED_HOSTS:-127.0.0.1:$PORT,localhost:$PORT,127.0.0.1,localhost}"
if [[ -n "${MLFLOW_BIN:-}" ]]; then BIN="$MLFLOW_BIN"
elif [[ -x "$HERE/.venv/bin/mlflow" ]]; then BIN="$HERE/.venv/bin/mlflow"
else BIN="mlflow"; fi

if [[ "$HOST" != "127.0.0.1" && "$HOST" != "localhost" && -z "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
  echo "server.sh: binding $HOST without MLFLOW_ALLOWED_HOSTS; only loopback Host headers will be accepted" >&2
fi
mkdir -p "$STATE" "$ARTIFACTS"
# cd away from the repo root: its mlflow/ folder (this one) must never shadow the mlflow package.
cd "$STATE"
exec "$BIN" server \
  --host "$HOST" --port "$PORT" --workers "$WORKERS" \
  --backend-store-uri "$BACKEND" \
  --serve-artifacts --artifacts-destination "$ARTIFACTS" \
  --allowed-hosts "$ALLOWED"

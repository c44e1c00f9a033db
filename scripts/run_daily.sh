#!/usr/bin/env bash
# `make run`: seed the embedded source for one day, start the register emulator on 127.0.0.1,
# run the daily DAG for that day with `airflow dags test`, stop the emulator, print the summary.
# Safe to run twice: the second run of a day sends nothing and prints the same totals.
set -euo pipefail
source "$(dirname "$0")/env.sh"

DAY="${DAY:-$(TZ=Europe/Stockholm date -d yesterday +%F)}"
RECORDS="${RECORDS:-2000}"
PORT="${NVR_EMULATOR_PORT:-8089}"
mkdir -p var/logs "$AIRFLOW_HOME"

"$BIN/python" -m vaxreport generate --day "$DAY" --records "$RECORDS"

if "$BIN/python" - "$PORT" <<'PY'
import socket, sys
s = socket.socket()
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
then
  echo "port $PORT on 127.0.0.1 is taken: stop what runs there (an old emulator?) or set NVR_EMULATOR_PORT" >&2
  exit 1
fi
"$BIN/python" -m nvr_emulator --host 127.0.0.1 --port "$PORT" --db var/register.sqlite > var/logs/emulator.log 2>&1 &
EMULATOR_PID=$!
trap 'kill $EMULATOR_PID 2>/dev/null || true; wait $EMULATOR_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$BIN/python" -c "import httpx,sys; httpx.get('http://127.0.0.1:$PORT/fhir/metadata', timeout=1)" 2>/dev/null; then break; fi
  kill -0 $EMULATOR_PID 2>/dev/null || { echo "emulator did not start, see var/logs/emulator.log" >&2; exit 1; }
  sleep 0.2
done
if [ "$PORT" != 8089 ]; then
  export AIRFLOW_CONN_NVR_API="${AIRFLOW_CONN_NVR_API//127.0.0.1:8089/127.0.0.1:$PORT}"
fi

"$BIN/airflow" db migrate > var/logs/airflow-db-migrate.log 2>&1 \
  || { echo "airflow db migrate failed, see var/logs/airflow-db-migrate.log" >&2; exit 1; }
echo "running vaccinations_daily for $DAY with airflow dags test (log: var/logs/dags-test-$DAY.log)"
"$BIN/airflow" dags test vaccinations_daily "$(date -u +%FT%T+00:00)" --conf "{\"day\": \"$DAY\"}" \
  > "var/logs/dags-test-$DAY.log" 2>&1 \
  || { tail -40 "var/logs/dags-test-$DAY.log" >&2; echo "the DAG run failed, see var/logs/dags-test-$DAY.log" >&2; exit 1; }
"$BIN/python" -m vaxreport summary --day "$DAY"
"$BIN/python" - "$PORT" <<'PY'
import httpx, sys
stats = httpx.get(f"http://127.0.0.1:{sys.argv[1]}/admin/stats", timeout=10).json()
print(f"register emulator: {stats['immunizations']} vaccinations stored (var/register.sqlite)")
PY

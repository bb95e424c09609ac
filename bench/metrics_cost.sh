#!/usr/bin/env bash
# bench/metrics_cost.sh: what /metrics costs the service. GET /v1/orders/42/ (details, seeded
# data) under wrk, alternately without and with a scrape of /metrics every 100 ms (what a
# 100 ms scrape_interval does; ours in k8s is 15 s), ROUNDS pairs of rounds interleaved in one
# run so drift on a shared machine hits both sides alike (goal: under 2 % apart). Then the CPU
# one scrape costs, measured alone. Loopback only, a private PostgreSQL (build/metrics-cost-pg,
# port METRICS_COST_PG_PORT); about ROUNDS * 2 * SECONDS_PER_ROUND + 20 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ORDERSERVICE_BIN:-build/orderservice}
rounds=${ROUNDS:-12}
seconds=${SECONDS_PER_ROUND:-2}
workers=${WORKERS:-1}
port=${METRICS_COST_PORT:-18190}
pgdir=$PWD/build/metrics-cost-pg
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 2; }
pids=()
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
  tools/pgcluster stop "$pgdir" >/dev/null 2>&1 || true
}
trap cleanup EXIT

url=$(tools/pgcluster start "$pgdir" "${METRICS_COST_PG_PORT:-25514}" 2>/dev/null)
psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS metrics_cost WITH (FORCE)" -c "CREATE DATABASE metrics_cost" >/dev/null
export DATABASE_URL=${url%/*}/metrics_cost LOG_LEVEL=warn ORDERSERVICE_ENV=development
export JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
token=$("$bin" token --sub bench --role admin --ttl 3600)
"$bin" migrate 2>/dev/null && "$bin" seed 2>/dev/null

PORT=$port WORKERS=$workers "$bin" serve & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/" >/dev/null && break; sleep 0.1; done
curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/orders/42/" >/dev/null

details() {
  wrk -t1 -c32 -d"${seconds}s" -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/orders/42/" 2>&1 |
    awk '/Requests\/sec/ {print $2}'
}

# Warm-up (JIT traces, prepared statements on every connection), not counted.
wrk -t1 -c32 -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/orders/42/" >/dev/null

# Rounds of three kinds, their order rotated every round so a trend in the machine's load
# falls on all of them: no client besides wrk; a client fetching /health/live/ every 100 ms
# (the control: a second periodic client with a trivial answer); a client fetching /metrics
# every 100 ms (the scrape). Both periodic clients are bench/every.py: one process and one
# kept-alive connection, as Prometheus scrapes (a `curl; sleep` loop forks twice per request,
# which costs this 2-core machine more than the request itself). The figures are medians over
# the rounds, which one disturbed round cannot move much.
without=() control=() with=() scrapes=()
periodic() { # url: prints `details`'s req/s and the answers bench/every.py read meanwhile
  local log=$(mktemp) rate
  python3 bench/every.py "$1" 100 >"$log" & looper=$!
  rate=$(details)
  kill -TERM "$looper"; wait "$looper" || { echo "bench/every.py $1 failed" >&2; exit 1; }
  echo "$rate $(cat "$log")"; rm -f "$log"
}
for round in $(seq "$rounds"); do
  for kind in $(printf 'none\ncontrol\nscrape\n' | tail -n +$((round % 3 + 1)); printf 'none\ncontrol\nscrape\n' | head -n $((round % 3))); do
    case $kind in
      none) without+=("$(details)") ;;
      control) read -r rate _ < <(periodic "http://127.0.0.1:$port/health/live/"); control+=("$rate") ;;
      scrape) read -r rate n < <(periodic "http://127.0.0.1:$port/metrics"); with+=("$rate"); scrapes+=("$n") ;;
    esac
  done
  echo "round $round: no client ${without[-1]} req/s, control every 100 ms ${control[-1]} req/s, /metrics every 100 ms ${with[-1]} req/s (${scrapes[-1]} scrapes)"
done

# What one scrape costs the service in CPU, measured alone: the process's CPU time (utime +
# stime, /proc) over 500 back-to-back scrapes on one connection.
pid=${pids[-1]}
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
curl -sf $(for _ in $(seq 500); do echo "http://127.0.0.1:$port/metrics"; done) >/dev/null
ticks=$(( $(cpu) - before ))
size=$(curl -sf "http://127.0.0.1:$port/metrics" | wc -c)
python3 - "${without[*]}" "${control[*]}" "${with[*]}" "$size" "$workers" "$ticks" "$(getconf CLK_TCK)" "${scrapes[*]}" "$seconds" <<'PY'
import statistics, sys
without, control, with_ = [list(map(float, a.split())) for a in sys.argv[1:4]]
size, workers, ticks, hz = sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
scrapes, seconds = list(map(int, sys.argv[8].split())), float(sys.argv[9])
per_scrape_ms = 1000 * ticks / hz / 500
med = statistics.median
vs_control = [w / c for c, w in zip(control, with_)]
vs_none = [w / n for n, w in zip(without, with_)]
print(f"details, {workers} worker(s), 32 connections, {len(with_)} rounds (medians): {med(without):.0f} req/s with "
      f"no other client, {med(control):.0f} req/s with the control every 100 ms, {med(with_):.0f} req/s with "
      f"/metrics every 100 ms ({size} bytes; {statistics.median(scrapes) / seconds:.1f} scrapes/s)")
print(f"scrape vs control: median of the rounds' ratios {100 * (med(vs_control) - 1):+.2f} % "
      f"(rounds from {100 * (min(vs_control) - 1):+.1f} % to {100 * (max(vs_control) - 1):+.1f} %); "
      f"scrape vs no client: {100 * (med(vs_none) - 1):+.2f} %")
# 10 scrapes a second, each per_scrape_ms of CPU: per_scrape_ms * 10 ms per 1000 ms, in %.
print(f"one scrape alone: {per_scrape_ms:.2f} ms of service CPU (500 scrapes, {ticks} ticks): at 10 scrapes/s "
      f"{per_scrape_ms:.2f} % of one core")
PY

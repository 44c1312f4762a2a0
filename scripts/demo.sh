#!/usr/bin/env bash
# The main job: a Redis server holding about 100 MB moves from host a to host b of a lab
# while a client on another "host" keeps incrementing a counter on one connection every
# millisecond. Prints the report, what the client saw, and proof that the data and the
# connection survived; then removes the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY:-$PWD/target/release/ferry}
LAB=demo
export FERRY_LAB=$LAB
WORK=$(mktemp -d /run/ferry-demo.XXXXXX)
probe_pid=

cleanup() {
    [ -n "$probe_pid" ] && kill "$probe_pid" 2>/dev/null || true
    "$FERRY" lab down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
"$FERRY" lab down >/dev/null 2>&1 || true

echo "== a lab: hosts a and b, and a client, each its own network namespace"
"$FERRY" lab up
echo
echo "== Redis on host a, filled with about 100 MB"
"$FERRY" lab run --host a --name redis -- /usr/bin/redis-server --port 6379 --bind 0.0.0.0 \
    --save '' --appendonly no --protected-mode no --enable-debug-command yes
IP=$("$FERRY" lab status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([c["net"]["address"].split("/")[0] for h in s["hosts"] for c in h["containers"] if c["name"]=="redis"][0])')
cli() { "$FERRY" lab exec client -- redis-cli -h "$IP" "$@"; }
until [ "$(cli ping 2>/dev/null)" = PONG ]; do sleep 0.05; done
cli debug populate 100000 key 1000 >/dev/null
KEYS_BEFORE=$(cli dbsize)
DIGEST_BEFORE=$(cli debug digest)
echo "keys: $KEYS_BEFORE, digest: $DIGEST_BEFORE"
echo
echo "== a client on 'client' issues INCR on one connection every millisecond"
"$FERRY" lab exec client -- "$FERRY" probe redis "$IP:6379" --interval-ms 1 --out "$WORK/probe.json" &
probe_pid=$!
sleep 1
echo
echo "== ferry migrate redis --to b"
"$FERRY" migrate redis --to b --report "$WORK/report.json"
sleep 1
kill "$probe_pid"; wait "$probe_pid" 2>/dev/null || true
probe_pid=
echo
echo "== what the client saw"
python3 - "$WORK/probe.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
n, first, last = p["requests"], p["first_value"], p["last_value"]
print(f"requests: {n} on one connection from {p['local_addr']} (never reconnected)")
print(f"counter went {first} -> {last}: {last - first + 1} increments for {n} requests, lost or repeated: {p['lost_or_repeated']}, errors: {len(p['errors'])}")
print(f"worst request latency: {p['max_latency_ms']:.1f} ms (median {p['p50_latency_ms']:.2f} ms)")
ok = p["lost_or_repeated"] == 0 and not p["errors"] and last - first + 1 == n
sys.exit(0 if ok else 1)
PY
echo
echo "== after the move"
"$FERRY" lab status
KEYS_AFTER=$(cli dbsize)
echo "keys: $KEYS_AFTER (before: $KEYS_BEFORE, plus the client's counter: $(cli get ferry:probe))"
cli del ferry:probe >/dev/null
DIGEST_AFTER=$(cli debug digest)
echo "digest without the counter: $DIGEST_AFTER (before: $DIGEST_BEFORE)"
[ "$DIGEST_AFTER" = "$DIGEST_BEFORE" ] || { echo "the data changed!" >&2; exit 1; }
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("ferry downtime:", round(r["downtime_ms"],1), "ms; outcome:", r["outcome"])' "$WORK/report.json"
echo "the data and the connection survived; removing the lab"

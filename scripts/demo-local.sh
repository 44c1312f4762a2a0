#!/usr/bin/env bash
# Checkpoints and restores a Redis container holding data on this host, with reports.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY:-target/release/ferry}
WORK=/run/ferry-demo-local
NS=ferry-demo-local

cleanup() {
    for id in $(runc --root "$WORK/runc" list -q 2>/dev/null); do runc --root "$WORK/runc" delete -f "$id" >/dev/null 2>&1 || true; done
    ip netns delete "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
cleanup
mkdir -p "$WORK/runc"

echo "== ferry doctor"
"$FERRY" doctor

echo "== a Redis container in its own network namespace"
ip netns add "$NS"
ip -n "$NS" link set lo up
"$FERRY" bundle create "$WORK/bundle" --netns "/run/netns/$NS" -- \
    /usr/bin/redis-server --port 6379 --save '' --appendonly no --protected-mode no --enable-debug-command yes >/dev/null
runc --root "$WORK/runc" --log "$WORK/runc.log" run -d --bundle "$WORK/bundle" redis </dev/null >/dev/null 2>&1
until ip netns exec "$NS" redis-cli ping >/dev/null 2>&1; do sleep 0.05; done
ip netns exec "$NS" redis-cli debug populate 200000 key 100 >/dev/null
echo "keys before: $(ip netns exec "$NS" redis-cli dbsize)"

echo "== ferry checkpoint"
"$FERRY" checkpoint redis --images "$WORK/images" --tcp-established --runtime-root "$WORK/runc" --report "$WORK/checkpoint.json"
echo "== ferry restore"
"$FERRY" restore redis --images "$WORK/images" --bundle "$WORK/bundle" --tcp-established --runtime-root "$WORK/runc" --report "$WORK/restore.json"
echo "keys after: $(ip netns exec "$NS" redis-cli dbsize), PING: $(ip netns exec "$NS" redis-cli ping)"

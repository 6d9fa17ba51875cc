# Shared by the bench scripts that drive one release server (sourced, not run):
# start_server DIR starts `datapool serve` on a fresh data dir under DIR and sets
# SERVER_PID, ADDR and TOKEN; api calls its admin API; rss KEY reads its memory.
# The caller's EXIT trap should kill "$SERVER_PID".

start_server() {
    local work=$1
    RUST_LOG=info "$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:0 --log-format json \
        >"$work/server.log" 2>&1 &
    SERVER_PID=$!
    ADDR=
    for _ in $(seq 1 300); do
        ADDR=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("message") == "listening":
        print(event["addr"]); break
' "$work/server.log" 2>/dev/null || true)
        [ -n "$ADDR" ] && break
        sleep 0.1
    done
    [ -n "$ADDR" ] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
    TOKEN=$(cat "$work/data/admin-token")
    CERT="$work/data/tls/cert.pem"
}

api() {
    curl -sS --cacert "$CERT" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' "$@"
}

rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SERVER_PID/status"; }

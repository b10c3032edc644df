#!/bin/sh
# curl, the tool students reach for first, against the server's HTTP answers:
# 400 for a plain request, 426 naming version 13, 101 with the RFC's accept
# key, and the client page with --client-page. Skipped, with the reason, when
# curl is missing. Usage: tests/interop_curl.sh ./server
server=${1:-./server}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v curl >/dev/null 2>&1 || {
    echo "SKIPPED: curl is not installed (apt-get install curl)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}
. "$root/tests/start_server.sh"
start_server "$server" --quiet --client-page "$root/web/client.html"
url="http://127.0.0.1:$port"
passed=0
failed=0

# check NAME PATTERN CURL-ARGUMENTS...: the response (headers and body) must
# contain the extended regular expression PATTERN.
check() {
    name=$1
    pattern=$2
    shift 2
    response=$(curl -sS -i --max-time 3 "$@" 2>&1 | tr -d '\r')
    if printf '%s\n' "$response" | grep -Eq "$pattern"; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name: expected /$pattern/ in:"
        printf '%s\n' "$response" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
}

ws_headers="-H Connection:Upgrade -H Upgrade:websocket -H Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ=="
check "a request that is not a WebSocket handshake gets 400" \
    '^HTTP/1.1 400 Bad Request' "$url/chat"
# shellcheck disable=SC2086
check "version 8 gets 426 naming version 13" \
    '^Sec-WebSocket-Version: 13$' $ws_headers -H Sec-WebSocket-Version:8 "$url/"
# shellcheck disable=SC2086
check "a handshake gets 101 with the RFC 6455 example's accept key" \
    '^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=$' \
    $ws_headers -H Sec-WebSocket-Version:13 "$url/"
check "--client-page serves the page at GET /" \
    '<title>WebSocket echo client</title>' "$url/"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

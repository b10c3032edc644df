#!/bin/sh
# Interoperability with Node's ws, installed from npm into tests/node/ (not
# into the system) the first time. Skipped, with the reason, when node or npm
# is missing or npm cannot reach its registry. Usage: tests/interop_node.sh ./server
server=${1:-./server}
here=$(dirname "$0")
skip() {
    echo "SKIPPED: $1"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}
command -v node >/dev/null 2>&1 || skip "node is not installed (apt-get install nodejs npm)"
if [ ! -d "$here/node/node_modules/ws" ]; then
    command -v npm >/dev/null 2>&1 || skip "npm is not installed (apt-get install npm)"
    npm install --prefix "$here/node" --no-audit --no-fund --silent ws@8 >/dev/null 2>&1 ||
        skip "npm could not install ws (no registry?)"
fi
. "$here/start_server.sh"
start_server "$server" --quiet
plain_port=$port
start_server "$server" --quiet --permessage-deflate
NODE_PATH="$here/node/node_modules" node "$here/interop_node.js" "$plain_port" "$port"

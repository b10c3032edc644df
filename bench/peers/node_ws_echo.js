// node_ws_echo.js -- the echo server of Node's "ws" library, as its README
// shows it, for the benchmark. Usage: node node_ws_echo.js PORT [--permessage-deflate]
// (with it, perMessageDeflate: true, ws's own defaults for compression).
const { WebSocketServer } = require("ws");

const server = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(process.argv[2] || 0),
  perMessageDeflate: process.argv.includes("--permessage-deflate"),
});
server.on("listening", () => {
  console.log(`Listening on ws://127.0.0.1:${server.address().port}`);
});
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});

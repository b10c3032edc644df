// interop_node.js -- Node's ws (npm), a client nobody here wrote, against our
// server. Run by tests/interop_node.sh, which installs ws into tests/node/.
// Usage: node tests/interop_node.js PORT DEFLATE_PORT, the second a server
// started with --permessage-deflate; prints "N passed, N failed".
// With WS_CA_FILE set, it connects with wss://localhost and trusts that
// certificate authority (tests/test_tls.py).
"use strict";
const fs = require("fs");
const WebSocket = require("ws");

const ca = process.env.WS_CA_FILE ? fs.readFileSync(process.env.WS_CA_FILE) : undefined;
const base = ca ? "wss://localhost" : "ws://127.0.0.1";
const url = `${base}:${process.argv[2]}/`;
const deflateUrl = `${base}:${process.argv[3]}/`;
let passed = 0;
let failed = 0;

// Opens a connection, runs body(ws, next) where next() resolves with the next
// message (data, isBinary), and reports the test.
async function test(name, body, target = url, options = {}) {
  const ws = new WebSocket(target, { ...options, ca });
  const queue = [];
  const waiting = [];
  ws.on("message", (data, isBinary) => {
    const item = { data, isBinary };
    if (waiting.length) waiting.shift()(item); else queue.push(item);
  });
  const next = () => new Promise((resolve) => (queue.length ? resolve(queue.shift()) : waiting.push(resolve)));
  try {
    await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
    await Promise.race([body(ws, next), new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 10000))]);
    console.log(`PASS ${name}`);
    passed++;
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    failed++;
  } finally {
    ws.terminate();
  }
}

function expect(condition, what) {
  if (!condition) throw new Error(what);
}

function closed(ws) {
  return new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
}

(async () => {
  await test("text comes back as text", async (ws, next) => {
    ws.send("Hello from Node, κόσμε");
    const { data, isBinary } = await next();
    expect(!isBinary && data.toString() === "Hello from Node, κόσμε", `got ${data}`);
  });
  await test("1 MiB of binary comes back byte for byte", async (ws, next) => {
    const payload = Buffer.alloc(1024 * 1024, 0).map((_, i) => (i * 31) & 0xff);
    ws.send(payload);
    const { data, isBinary } = await next();
    expect(isBinary && Buffer.compare(data, payload) === 0, `got ${data.length} bytes`);
  });
  await test("a message sent in three fragments comes back whole", async (ws, next) => {
    ws.send("one ", { fin: false });
    ws.send("two ", { fin: false });
    ws.send("three", { fin: true });
    const { data } = await next();
    expect(data.toString() === "one two three", `got ${data}`);
  });
  await test("a ping is answered with a pong carrying its payload", async (ws) => {
    const pong = new Promise((resolve) => ws.once("pong", resolve));
    ws.ping("are you there");
    const payload = await pong;
    expect(payload.toString() === "are you there", `got ${payload}`);
  });
  await test("close 4000 with a reason is echoed", async (ws) => {
    const result = closed(ws);
    ws.close(4000, "done");
    const { code, reason } = await result;
    expect(code === 4000 && reason === "done", `got ${code} ${reason}`);
  });
  await test("an invalid UTF-8 text message is closed with 1007", async (ws) => {
    const result = closed(ws);
    // ws checks text it sends, so the bytes go out as they are, raw.
    ws._sender.sendFrame(WebSocket.Sender.frame(Buffer.from([0xed, 0xa0, 0x80]),
      { fin: true, opcode: 1, mask: true, readOnly: false, rsv1: false }), () => {});
    const { code } = await result;
    expect(code === 1007, `got ${code}`);
  });
  // permessage-deflate: ws compresses messages of 1 KiB and more (its
  // threshold) and sends smaller ones as they are, on the same connection.
  const compressed = { perMessageDeflate: true };
  await test("--permessage-deflate: the offer is accepted", async (ws) => {
    expect(ws.extensions.startsWith("permessage-deflate"), `extensions: "${ws.extensions}"`);
  }, deflateUrl, compressed);
  await test("--permessage-deflate: small and large text and binary come back", async (ws, next) => {
    const messages = ["short", "κόσμε ".repeat(2000), Buffer.alloc(300000, 7),
      Buffer.alloc(200000).map((_, i) => (i * 131) & 0xff), ""];
    for (const message of messages) {
      ws.send(message);
      const { data, isBinary } = await next();
      const same = typeof message === "string" ? !isBinary && data.toString() === message
        : isBinary && Buffer.compare(data, message) === 0;
      expect(same, `sent ${message.length} bytes, got ${data.length}`);
    }
  }, deflateUrl, compressed);
  await test("--permessage-deflate: a compressed message in fragments comes back whole", async (ws, next) => {
    const part = "fragment ".repeat(500);
    ws.send(part, { fin: false });
    ws.send(part, { fin: false });
    ws.send(part, { fin: true });
    const { data } = await next();
    expect(data.toString() === part.repeat(3), `got ${data.length} bytes`);
  }, deflateUrl, compressed);
  await test("--permessage-deflate: a hundred messages in a row come back in order", async (ws, next) => {
    for (let i = 0; i < 100; i++) ws.send(`message ${i} `.repeat(i * 10));
    for (let i = 0; i < 100; i++) {
      const { data } = await next();
      expect(data.toString() === `message ${i} `.repeat(i * 10), `message ${i} differs`);
    }
  }, deflateUrl, compressed);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})();

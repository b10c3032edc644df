// deflate_client.js -- the benchmark's client for permessage-deflate (RFC 7692):
// Node's "ws" with perMessageDeflate, the same client for every server.
// bench/loadgen cannot compress, so the compressed scenarios use this instead.
//
//   node deflate_client.js echo --port P [--connections C] [--size S] [--seconds T]
//                               [--start-at MS]
//       C connections each keep one S-byte JSON-like text message in flight;
//       the echoes that arrive in the T seconds from MS (ms since the epoch;
//       default: as soon as every connection is open) are counted.
//   node deflate_client.js hold --port P --pid SERVER_PID [--connections C] [--size S]
//       C connections each echo one S-byte message, so that the server has
//       made both of its zlib streams, and stay open; after a second idle the
//       server's VmRSS and thread count are read from /proc, then each
//       connection echoes once more: those that do are "held".
//
// Every connection must have agreed to permessage-deflate (its "extensions"
// names it), or the run fails: no server is measured uncompressed. Every echo
// is compared byte for byte with what was sent, and the bytes the server sent
// on the wire must be fewer than the payload it echoed. Output: one line of
// name=value pairs, for bench/run.py; the exit status is 1 if anything went
// wrong (errors=N counts it, and the reasons are on stderr).
"use strict";

const fs = require("fs");
const WebSocket = require("ws");

const options = { port: 0, connections: 100, size: 4096, seconds: 5, startAt: 0, pid: 0 };
const mode = process.argv[2];
for (let i = 3; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, "").replace(/-(.)/g, (_, c) => c.toUpperCase());
  if (!(name in options)) {
    console.error(`deflate_client.js: unknown option ${process.argv[i]}`);
    process.exit(2);
  }
  options[name] = Number(process.argv[i + 1]);
}
if (mode !== "echo" && mode !== "hold") {
  console.error("usage: deflate_client.js echo|hold --port P [--connections C] [--size S]\n" +
                "       [--seconds T] [--start-at MS] [--pid SERVER_PID]");
  process.exit(2);
}

// ---- The messages ----------------------------------------------------------
// JSON of the kind an application sends (records of ids, timestamps, names,
// coordinates, tags and a sentence), exactly `size` bytes of ASCII, from a
// fixed pseudo-random sequence. A pool of different messages, so that no
// message is a copy of the one before it (a compressor that can see the last
// message whole would otherwise send only a reference to it).
const POOL = 64;
const WORDS = ("the of and to in is it that for on with as was at by this from be are or an have " +
  "not but all they which one you were her his has had their there been if more when will would " +
  "who so no time people year way day man thing woman life child world school state family " +
  "student group country problem hand part place case week company system program question " +
  "work government number night point home water room mother area money story fact month " +
  "lot right study book eye job word business issue side kind head house service friend").split(" ");
const NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
               "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor"];
const TAGS = ["news", "sport", "music", "tech", "travel", "food", "science", "art", "games", "books"];

let seed = 12345;
function random(n) { // xorshift32: the same messages every run
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % n;
}

function record(id) {
  const words = [];
  for (let i = 0, n = 6 + random(12); i < n; i++)
    words.push(WORDS[random(WORDS.length)]);
  const time = Date.UTC(2026, 10, 30) + random(86400000);
  return JSON.stringify({
    id: 100000 + id * 7 + random(7),
    user: `${NAMES[random(NAMES.length)]}_${random(1000)}`,
    time: new Date(time).toISOString(),
    position: { lat: Number((random(180000000) / 1e6 - 90).toFixed(6)),
                lon: Number((random(360000000) / 1e6 - 180).toFixed(6)) },
    tags: [TAGS[random(TAGS.length)], TAGS[random(TAGS.length)]],
    score: random(10000) / 100,
    read: random(2) === 1,
    text: words.join(" ") + ".",
  });
}

function message(number, size) {
  let body = '{"seq":' + number + ',"items":[';
  for (let id = 0; ; id++) {
    const next = (id ? "," : "") + record(number * 1000 + id);
    if (body.length + next.length + 2 > size)
      break;
    body += next;
  }
  body += "]}";
  if (body.length > size)
    throw new Error(`--size ${size} is too small for a message`);
  return Buffer.from(body + " ".repeat(size - body.length)); // JSON allows trailing blanks
}

const messages = [];
for (let i = 0; i < POOL; i++)
  messages.push(message(i, options.size));

// ---- Connections -------------------------------------------------------------
const url = `ws://127.0.0.1:${options.port}/`;
let errors = 0;
const reasons = new Map(); // reason -> count, for stderr
function fail(reason) {
  errors++;
  reasons.set(reason, (reasons.get(reason) || 0) + 1);
}

// Opens one connection, checks that compression was agreed, and calls back
// with it, or with null.
function open(index, done) {
  const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 0 });
  ws.index = index;
  ws.next = index * 7; // which message of the pool it sends next
  ws.expected = null;
  let settled = false;
  ws.on("open", () => {
    settled = true;
    if (!/^permessage-deflate\b/.test(ws.extensions)) {
      fail(`the server did not agree to permessage-deflate (extensions: "${ws.extensions}")`);
      ws.terminate();
      done(null);
      return;
    }
    done(ws);
  });
  ws.on("error", (error) => {
    if (!settled) {
      settled = true;
      fail(`connect: ${error.message}`);
      done(null);
    } else {
      fail(`connection: ${error.message}`);
    }
  });
  ws.on("close", () => { ws.closed = true; });
}

function send(ws) {
  ws.expected = messages[ws.next++ % POOL];
  ws.send(ws.expected, { binary: false });
}

// A received echo: true if it is the message sent, byte for byte.
function check(ws, data, isBinary) {
  if (isBinary || ws.expected === null || !data.equals(ws.expected)) {
    fail("an echo differed from the message sent");
    ws.terminate();
    return false;
  }
  ws.expected = null;
  return true;
}

// Opens `count` connections, at most `parallel` handshakes at a time.
function openAll(count, parallel, each, done) {
  const sockets = [];
  let started = 0, finished = 0;
  function startOne() {
    const index = started++;
    open(index, (ws) => {
      if (ws)
        sockets.push(ws);
      finished++;
      if (ws && each)
        each(ws, () => next());
      else
        next();
    });
  }
  function next() {
    if (started < count)
      startOne();
    else if (finished === count && sockets.ready !== true) {
      sockets.ready = true;
      done(sockets);
    }
  }
  for (let i = 0; i < Math.min(parallel, count); i++)
    startOne();
}

// Bytes the server sent on the wire against the payload bytes of its echoes:
// under 1 when it compressed.
function wireRatio(sockets, payload) {
  let wire = 0;
  for (const ws of sockets)
    wire += ws._socket ? ws._socket.bytesRead : 0;
  if (payload > 0 && wire >= payload)
    fail(`the server sent ${wire} bytes on the wire for ${payload} bytes of echoes: uncompressed`);
  return payload > 0 ? wire / payload : 0;
}

function finish(figures, sockets) {
  for (const ws of sockets)
    ws.terminate();
  for (const [reason, count] of reasons)
    console.error(`deflate_client.js: ${count} x ${reason}`);
  figures.errors = errors;
  console.log(Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(" "));
  process.exit(errors ? 1 : 0);
}

// ---- echo --------------------------------------------------------------------
function echo() {
  openAll(options.connections, 100, null, (sockets) => {
    if (sockets.length === 0)
      return finish({ messages_per_s: 0, mb_per_s: 0 }, sockets);
    let counting = false, stopped = false, counted = 0, payload = 0;
    for (const ws of sockets) {
      ws.on("message", (data, isBinary) => {
        if (!check(ws, data, isBinary))
          return;
        payload += data.length;
        if (counting)
          counted++;
        if (!stopped)
          send(ws);
      });
    }
    const start = Math.max(Date.now(), options.startAt);
    let cpuStart;
    setTimeout(() => {
      counting = true;
      cpuStart = process.cpuUsage();
    }, start - Date.now());
    for (const ws of sockets)
      send(ws); // from now on: until the window opens, a warm-up
    setTimeout(() => {
      counting = false;
      stopped = true;
      const cpu = process.cpuUsage(cpuStart);
      const seconds = options.seconds;
      for (const ws of sockets)
        if (ws.closed)
          fail("the server closed a connection during the run");
      finish({
        messages: counted,
        messages_per_s: (counted / seconds).toFixed(0),
        // uncompressed payload, both ways (as bench/loadgen counts MB/s)
        mb_per_s: (counted * options.size * 2 / seconds / 1e6).toFixed(2),
        wire_ratio: wireRatio(sockets, payload).toFixed(3),
        client_cpu_s: ((cpu.user + cpu.system) / 1e6).toFixed(2),
        connections: sockets.length,
      }, sockets);
    }, start - Date.now() + options.seconds * 1000);
  });
}

// ---- hold --------------------------------------------------------------------
function serverUsage() {
  try {
    const status = fs.readFileSync(`/proc/${options.pid}/status`, "utf8");
    return { rss: Number(/^VmRSS:\s+(\d+)/m.exec(status)[1]),
             threads: Number(/^Threads:\s+(\d+)/m.exec(status)[1]) };
  } catch (error) {
    return { rss: -1, threads: -1 };
  }
}

// One echo on one socket: calls back once, with true if it came back intact.
function echoOnce(ws, done) {
  let settled = false;
  const settle = (ok) => {
    if (settled)
      return;
    settled = true;
    ws.removeListener("message", onMessage);
    ws.removeListener("close", onClose);
    done(ok);
  };
  const onMessage = (data, isBinary) => settle(check(ws, data, isBinary));
  const onClose = () => {
    fail("the server closed a connection before its echo");
    settle(false);
  };
  if (ws.closed)
    return onClose();
  ws.on("message", onMessage);
  ws.on("close", onClose);
  send(ws);
}

function hold() {
  let payload = 0;
  const echoed = (ok) => { payload += ok ? options.size : 0; };
  // Each connection echoes its first message before the next one opens.
  const first = (ws, next) => echoOnce(ws, (ok) => { echoed(ok); next(); });
  openAll(options.connections, 50, first, (sockets) => {
    setTimeout(() => {
      const usage = serverUsage();
      let pending = sockets.length, held = 0;
      const last = () => finish({
        held,
        of: options.connections,
        server_rss_kb: usage.rss,
        server_threads: usage.threads,
        wire_ratio: wireRatio(sockets, payload).toFixed(3),
      }, sockets);
      if (pending === 0)
        return last();
      for (const ws of sockets) {
        echoOnce(ws, (ok) => {
          echoed(ok);
          held += ok ? 1 : 0;
          if (--pending === 0)
            last();
        });
      }
    }, 1000);
  });
}

// Nothing runs for ever: a run that has not finished by then has failed.
setTimeout(() => {
  fail("the run took too long");
  finish({}, []);
}, (options.seconds + 120) * 1000).unref();

if (mode === "echo")
  echo();
else
  hold();

#!/usr/bin/env python3
"""The browser client page (web/client.html) in a real browser: Debian's
Chromium, headless, driven through its DevTools protocol, which is itself a
WebSocket (spoken here with Python's websockets).

The page is served by the server (--client-page), over http:// and, with
--tls-cert, over https:// (it then connects with wss://), and also opened
from disk;
the test clicks its buttons, types, chooses a file, and asserts on the echoed
rows of the page's table and on the close event, as a student would see
them. It also saves a screenshot to build/client-page.png.

Usage: python3 tests/test_browser.py [./server]
Prints "N passed, N failed" (or "0 passed, 0 failed, 1 skipped" with the
reason, when Chromium or websockets is missing).
"""
import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "web", "client.html")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1000,760"]


def skip(reason):
    print(f"SKIPPED: {reason}")
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)


class Browser:
    """Chromium with a DevTools endpoint on a free loopback port."""

    def __init__(self, chromium, *flags):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, *flags, f"--user-data-dir={self.profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        self.port = None
        while self.port is None and time.time() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
            elif not line and self.process.poll() is not None:
                break
        if self.port is None:
            self.stop()
            raise RuntimeError("Chromium did not start its DevTools endpoint")

    def page_socket_url(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """A few DevTools commands over the page's WebSocket."""

    def __init__(self, socket):
        self.socket = socket
        self.next_id = 0
        self.events = []

    async def call(self, method, **params):
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method,
                                           "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression, what, seconds=10):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if await self.evaluate(expression):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def open(self, url):
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete' && !!document.getElementById('log')",
                            f"{url} to load")

    async def rows(self):
        return await self.evaluate("""Array.from(document.querySelectorAll('#log tr'), r =>
            ({kind: r.className, type: r.dataset.type, size: r.dataset.size,
              data: r.cells[4].textContent}))""")

    async def set_value(self, element_id, value):
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).value = "
                            f"{json.dumps(value)}")

    async def click(self, element_id):
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).click()")


async def session(page, server_port, binary_path, binary):
    """Connects, sends text and a file, closes with 4000; returns the rows,
    and the extensions the browser's WebSocket agreed to."""
    await page.click("connect")
    await page.wait_for("document.getElementById('status').className === 'open'", "the open event")
    extensions = await page.evaluate("ws.extensions")
    await page.set_value("text", "Hello from Chromium, κόσμε")
    await page.click("send-text")
    document = await page.call("DOM.getDocument")
    node = await page.call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#file")
    await page.call("DOM.setFileInputFiles", files=[binary_path], nodeId=node["nodeId"])
    await page.click("send-file")
    await page.wait_for("document.querySelectorAll('#log tr.echo').length === 2", "two echoes")
    await page.set_value("code", "4000")
    await page.set_value("reason", "done")
    await page.click("close")
    await page.wait_for("document.querySelectorAll('#log tr.event').length === 1", "the close event")
    return await page.rows(), extensions


def check_rows(rows, binary):
    text = "Hello from Chromium, κόσμε"
    expected_hex = " ".join(f"{b:02x}" for b in binary[:24]) + " …"
    echoes = [r for r in rows if r["kind"] == "echo"]
    assert [r["kind"] for r in rows] == ["sent", "echo", "sent", "echo", "event"], rows
    assert echoes[0] == {"kind": "echo", "type": "text", "size": str(len(text.encode())),
                         "data": text}, echoes[0]
    assert echoes[1] == {"kind": "echo", "type": "binary", "size": str(len(binary)),
                         "data": expected_hex}, echoes[1]
    assert rows[-1]["data"] == 'code 4000, reason "done"', rows[-1]


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1, and the flag that makes Chromium trust
    that one key (the SHA-256 of its public key), as a student's browser
    trusts it after they accept it once."""
    key, certificate = f"{folder}/key.pem", f"{folder}/cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", certificate],
                   check=True, capture_output=True)
    public_key = subprocess.run(["openssl", "x509", "-in", certificate, "-pubkey", "-noout"],
                                check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=public_key,
                         check=True, capture_output=True).stdout
    spki = base64.b64encode(hashlib.sha256(der).digest()).decode()
    return certificate, key, f"--ignore-certificate-errors-spki-list={spki}"


def start_server(server, *options):
    process = subprocess.Popen([server, "--port", "0", "--quiet", "--client-page", PAGE,
                                *options], stdout=subprocess.PIPE)
    port = int(process.stdout.readline().decode().rsplit(":", 1)[1].split()[0])
    return process, port


async def run(server, chromium):
    import websockets  # Debian's python3-websockets
    results = []
    binary = bytes((i * 7) % 256 for i in range(1000))
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as file:
        file.write(binary)
    folder = tempfile.mkdtemp(prefix="browser-tls-")
    certificate, key, trust_flag = self_signed_certificate(folder)
    process, port = start_server(server)
    tls_process, tls_port = start_server(server, "--tls-cert", certificate, "--tls-key", key)
    deflating, deflate_port = start_server(server, "--permessage-deflate")
    browser = Browser(chromium, trust_flag)
    try:
        async with websockets.connect(browser.page_socket_url(), max_size=None) as socket:
            page = Page(socket)
            for name, url, address, agreed in [
                    ("the page served by --client-page echoes text and a file, and closes with 4000",
                     f"http://127.0.0.1:{port}/", None, ""),
                    ("the page opened from disk does the same",
                     "file://" + PAGE, f"ws://127.0.0.1:{port}/", ""),
                    ("the page served over https:// (--tls-cert) does the same over wss://",
                     f"https://127.0.0.1:{tls_port}/", None, ""),
                    ("with --permessage-deflate, Chromium's WebSocket agrees to compression and "
                     "the same session echoes", f"http://127.0.0.1:{deflate_port}/", None,
                     "permessage-deflate; client_max_window_bits=12")]:
                try:
                    await page.open(url)
                    if address:
                        await page.set_value("url", address)
                    rows, extensions = await session(page, port, file.name, binary)
                    assert extensions == agreed, \
                        f"expected extensions {agreed!r}, got {extensions!r}"
                    check_rows(rows, binary)
                    print(f"PASS {name}")
                    results.append(True)
                except Exception as error:  # report, then go on
                    print(f"FAIL {name}: {error!r}")
                    results.append(False)
            shot = await page.call("Page.captureScreenshot", format="png")
            os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
            with open(os.path.join(ROOT, "build", "client-page.png"), "wb") as out:
                out.write(base64.b64decode(shot["data"]))
    finally:
        browser.stop()
        for server_process in (process, tls_process, deflating):
            server_process.terminate()
            server_process.wait(timeout=10)
        os.unlink(file.name)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main():
    server = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./server")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        skip("Chromium is not installed (apt-get install chromium)")
    try:
        import websockets  # noqa: F401
    except ImportError:
        skip("Python's websockets is not installed (apt-get install python3-websockets)")
    results = asyncio.run(run(server, chromium))
    print(f"{results.count(True)} passed, {results.count(False)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The echo server of Python's websockets library (Debian python3-websockets),
for the benchmark. Usage: python3 python_websockets_echo.py PORT"""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main(port):
    # No size limit (our server has none either) and no compression (nobody
    # in the benchmark negotiates it).
    async with websockets.serve(echo, "127.0.0.1", port, max_size=None, compression=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"Listening on ws://127.0.0.1:{bound}", flush=True)
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

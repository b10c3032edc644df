"""The echo server of Python's websockets library (Debian python3-websockets),
for the benchmark. Usage: python3 python_websockets_echo.py PORT [--permessage-deflate]"""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main(port, deflate):
    # No size limit (our server has none either). Compression, websockets'
    # default, only with --permessage-deflate: the other scenarios measure
    # every server uncompressed.
    compression = "deflate" if deflate else None
    async with websockets.serve(echo, "127.0.0.1", port, max_size=None,
                                compression=compression) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"Listening on ws://127.0.0.1:{bound}", flush=True)
        await asyncio.Future()


arguments = [a for a in sys.argv[1:] if a != "--permessage-deflate"]
asyncio.run(main(int(arguments[0]) if arguments else 0, "--permessage-deflate" in sys.argv))

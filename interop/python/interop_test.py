"""Interop between our adapters (ws-tokio, ws-smol) and Python `websockets`, both directions.

Usage: python interop_test.py PATH/TO/interop   (an adapter's interop example binary)

1. Python clients against the rust server: text, binary, fragmented,
   16 MiB, ping/pong, and every close path (normal, 4000, 1001, 1009 from
   the client's size limit, 1006 from an aborted connection), checking what
   each side saw.
2. The rust client against a Python server with the same paths.
"""

import asyncio
import os
import subprocess
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

MIB = 1 << 20
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


async def closed_by_server(url):
    async with connect(url, max_size=None) as ws:
        await ws.send("go")
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            return closed.rcvd
    return None


async def last_close(base):
    async with connect(base + "/last-close") as ws:
        await ws.send("?")
        return await asyncio.wait_for(ws.recv(), 10)


async def python_clients(base):
    async with connect(base + "/echo", max_size=None) as ws:
        for message in ["héllo ✓", b"\x00\xff\x01", ""]:
            await ws.send(message)
            check(await ws.recv() == message, f"python->rust echo {message!r}")
        await ws.send(["frag", "ment", "ed"])
        check(await ws.recv() == "fragmented", "python->rust fragmented text")
        await ws.send([b"\x01\x02", b"\x03"])
        check(await ws.recv() == b"\x01\x02\x03", "python->rust fragmented binary")
        big = os.urandom(16 * MIB)
        await ws.send(big)
        check(await ws.recv() == big, "python->rust 16 MiB echo")
        pong = await ws.ping(b"ping payload")
        await asyncio.wait_for(pong, 5)
        check(True, "python->rust ping answered")
        await ws.close(1000, "done")
    await asyncio.sleep(0.2)
    check(await last_close(base) == "1000 done", "rust saw the client's 1000 'done'")

    rcvd = await closed_by_server(base + "/close")
    check(rcvd is not None and rcvd.code == 4000 and rcvd.reason == "bye", f"rust closed with 4000 bye: {rcvd}")
    rcvd = await closed_by_server(base + "/going-away")
    check(rcvd is not None and rcvd.code == 1001, f"rust closed with 1001: {rcvd}")

    async with connect(base + "/big", max_size=MIB) as ws:
        await ws.send(str(2 * MIB))
        try:
            await asyncio.wait_for(ws.recv(), 10)
            check(False, "python refuses a 2 MiB message")
        except ConnectionClosed as closed:
            check(closed.sent is not None and closed.sent.code == 1009, "python closed with 1009")
    await asyncio.sleep(0.2)
    check((await last_close(base)).startswith("1009"), "rust saw 1009")

    ws = await connect(base + "/echo")
    ws.transport.abort()
    await asyncio.sleep(0.3)
    check((await last_close(base)).startswith("1006"), "rust saw the abort as 1006")


server_saw = {}


async def python_server_handler(ws):
    path = ws.request.path
    try:
        if path == "/echo":
            async for message in ws:
                await ws.send(message)
        elif path == "/close":
            await ws.recv()
            await ws.close(4000, "bye")
        elif path == "/going-away":
            await ws.recv()
            await ws.close(1001, "going away")
        elif path == "/big":
            size = int(await ws.recv())
            await ws.send(b"Z" * size)
            await ws.wait_closed()
        elif path == "/drop":
            await ws.recv()
            ws.transport.abort()
            return
        await ws.wait_closed()
    except ConnectionClosed:
        pass
    server_saw[path] = (ws.close_code, ws.close_reason)


async def ws_tokio_client(binary):
    async with serve(python_server_handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(binary, "client", f"ws://127.0.0.1:{port}", stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        for line in out.decode().splitlines():
            check(line.startswith("ok "), "rust->python " + line)
        check(proc.returncode == 0, "rust client exit status")
        await asyncio.sleep(0.2)
    check(server_saw.get("/echo") == (1000, "done"), f"python saw rust's 1000 done: {server_saw.get('/echo')}")
    check(server_saw.get("/big", (None,))[0] == 1009, f"python saw rust's 1009: {server_saw.get('/big')}")


async def main(binary):
    proc = await asyncio.create_subprocess_exec(binary, "server", "127.0.0.1:0", stdout=subprocess.PIPE)
    port = int((await proc.stdout.readline()).decode().split()[-1])
    try:
        await python_clients(f"ws://127.0.0.1:{port}")
    finally:
        proc.terminate()
        await proc.wait()
    await ws_tokio_client(binary)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    if failures:
        print(f"{len(failures)} interop check(s) failed")
        sys.exit(1)
    print("python interop: all checks passed")

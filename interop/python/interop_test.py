"""Interop between our adapters (ws-tokio, ws-smol) and Python `websockets`, both directions.

Usage: python interop_test.py PATH/TO/interop   (an adapter's interop example binary)

1. Python clients against the rust server: text, binary, fragmented,
   16 MiB, ping/pong, and every close path (normal, 4000, 1001, 1009 from
   the client's size limit, 1006 from an aborted connection), checking what
   each side saw.
2. The same with permessage-deflate: Python clients with compression (the
   default offer and one with every parameter set) against the server's
   /deflate endpoint, through a relay that counts the bytes on the wire, so
   a side that negotiated but did not compress fails.
3. The rust client against a Python server with the same paths, and its
   compressed echo against the Python server's permessage-deflate (which
   caps both windows at 12 bits), counted the same way.
"""

import asyncio
import os
import subprocess
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

MIB = 1 << 20
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


class CountingRelay:
    """A TCP relay in front of a server that counts the bytes each way, per
    connection, keyed by the request path of the connection's first line."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.counts = {}

    async def start(self):
        self.server = await asyncio.start_server(self.relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def relay(self, client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        first = await client_reader.read(65536)
        path = first.split(b" ", 2)[1].decode() if first.count(b" ") >= 2 else "?"
        counts = self.counts.setdefault(path, {"up": 0, "down": 0})
        counts["up"] += len(first)
        server_writer.write(first)

        async def pump(reader, writer, key):
            try:
                while data := await reader.read(65536):
                    counts[key] += len(data)
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_reader, server_writer, "up"), pump(server_reader, client_writer, "down"))

    def close(self):
        self.server.close()


def events(n):
    """Compressible text like a feed of JSON events."""
    out, i = [], 0
    size = 0
    while size < n:
        item = f'{{"seq":{i},"topic":"sensors/{i % 13}","value":{i * 7 % 1000},"ok":true}}'
        out.append(item)
        size += len(item)
        i += 1
    return "".join(out)[:n]


async def compressed_clients(base, relay_base, relay):
    # The default offer (context takeover both ways, 15-bit windows).
    async with connect(relay_base + "/deflate", max_size=None) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        check(extensions.startswith("permessage-deflate"), f"rust accepted python's permessage-deflate: {extensions!r}")
        sent = 0
        for message in [events(1 * MIB), events(200_000).encode(), "héllo ✓", "", events(3000)]:
            await ws.send(message)
            sent += len(message)
            check(await ws.recv() == message, f"python->rust compressed echo of {len(message)} bytes")
        await ws.send(["frag", "ment", "ed"])
        check(await ws.recv() == "fragmented", "python->rust compressed fragmented text")
        await ws.close(1000, "done")
    counts = relay.counts.get("/deflate", {"up": sent, "down": sent})
    check(counts["up"] < sent // 3, f"python compressed on the wire: {counts['up']} bytes for {sent}")
    check(counts["down"] < sent // 3, f"rust compressed on the wire: {counts['down']} bytes for {sent}")

    # Every parameter set: both windows capped, no context takeover.
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=9,
    )
    async with connect(base + "/deflate", max_size=None, compression=None, extensions=[factory]) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        for param in ["server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits=10", "client_max_window_bits=9"]:
            check(param in extensions, f"rust answered {param}: {extensions!r}")
        for message in [events(300_000), events(300_000), b"\x00" * 100_000]:
            await ws.send(message)
            check(await ws.recv() == message, f"python->rust echo without context takeover, {len(message)} bytes")

    # An endpoint without compression declines the offer.
    async with connect(base + "/echo") as ws:
        check("Sec-WebSocket-Extensions" not in ws.response.headers, "rust's /echo declined permessage-deflate")
        await ws.send("plain")
        check(await ws.recv() == "plain", "python->rust echo after a declined offer")


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
server_extensions = {}


async def python_server_handler(ws):
    path = ws.request.path
    try:
        if path in ("/echo", "/deflate"):
            server_extensions[path] = [e.name for e in ws.protocol.extensions]
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
    # websockets' server accepts permessage-deflate by default.
    async with serve(python_server_handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        relay = CountingRelay(port)
        relay_port = await relay.start()
        proc = await asyncio.create_subprocess_exec(binary, "client", f"ws://127.0.0.1:{relay_port}", stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        for line in out.decode().splitlines():
            check(line.startswith("ok "), "rust->python " + line)
        check(proc.returncode == 0, "rust client exit status")
        await asyncio.sleep(0.2)
        relay.close()
    check(server_saw.get("/echo") == (1000, "done"), f"python saw rust's 1000 done: {server_saw.get('/echo')}")
    check(server_saw.get("/big", (None,))[0] == 1009, f"python saw rust's 1009: {server_saw.get('/big')}")
    check(server_extensions.get("/echo") == [], f"no compression where rust did not offer it: {server_extensions.get('/echo')}")
    check(server_extensions.get("/deflate") == ["permessage-deflate"], f"python accepted rust's offer: {server_extensions.get('/deflate')}")
    counts = relay.counts.get("/deflate", {"up": 0, "down": 0})
    check(0 < counts["up"] < MIB, f"rust compressed on the wire: {counts['up']} bytes up for about 4.3 MB")
    check(0 < counts["down"] < MIB, f"python compressed on the wire: {counts['down']} bytes down for about 4.3 MB")


async def main(binary):
    proc = await asyncio.create_subprocess_exec(binary, "server", "127.0.0.1:0", stdout=subprocess.PIPE)
    port = int((await proc.stdout.readline()).decode().split()[-1])
    relay = CountingRelay(port)
    relay_port = await relay.start()
    try:
        await python_clients(f"ws://127.0.0.1:{port}")
        await compressed_clients(f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{relay_port}", relay)
    finally:
        relay.close()
        proc.terminate()
        await proc.wait()
    await ws_tokio_client(binary)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    if failures:
        print(f"{len(failures)} interop check(s) failed")
        sys.exit(1)
    print("python interop: all checks passed")

"""Writes the committed seed corpus (corpus/*/seed-*). Run from fuzz/."""
import base64, hashlib, os, struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())

def frame(opcode, payload, fin=True, mask=None, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += bytes(mask)
    return head + payload

def write(target, name, data):
    with open(f"corpus/{target}/seed-{name}", "wb") as f:
        f.write(data)

request = (b"GET /chat?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Protocol: chat, v2\r\nOrigin: https://a.example\r\n\r\n")
write("server_handshake", "valid", b"\x07" + request)
write("server_handshake", "post", b"\x03" + request.replace(b"GET", b"POST", 1))
write("server_handshake", "body", b"\x05" + request.replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\nabc"))
write("server_handshake", "version", b"\x01" + request.replace(b"Version: 13", b"Version: 8"))
write("server_handshake", "extensions", b"\x0b" + request.replace(
    b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"\\\\\r\n\r\n"))

key = base64.b64encode(bytes([1] * 16))
response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept(key) + b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
write("client_response", "valid", b"\x05" + response + frame(1, b"hi"))
write("client_response", "status", b"\x09" + b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
write("client_response", "bad-accept", b"\x02" + response.replace(accept(key), b"AAAA"))

mask = [0x37, 0xfa, 0x21, 0x3d]
frames_masked = (frame(1, "κόσμε".encode(), mask=mask) + frame(2, b"\x00" * 200, fin=False, mask=mask)
                 + frame(9, b"ping", mask=mask) + frame(0, b"\x01" * 70000, mask=mask)
                 + frame(8, b"\x03\xe8bye", mask=mask))
write("frame_decoder", "masked", b"\x05\x11" + frames_masked)
write("frame_decoder", "unmasked", b"\x06\x03" + frame(1, b"hello") + frame(10, b"") + frame(1, b"x" * 300))
write("frame_decoder", "rsv1", b"\x0d\x40" + frame(1, b"abc", rsv=4, mask=mask))

# Connection script ops (ws_core::fuzzing::connection): 0-1 handle_read,
# 2-3 recv_buf + handle_received, 4 timers, 5 send, 6 short vectored
# write, 7 transport closed, 8 busy on/off, 9 shrink, 10-11 write all.
def feed(data, op=0):
    """Script ops: feed `data` in pieces of up to 256 bytes."""
    out = b""
    while data:
        piece, data = data[:256], data[256:]
        out += bytes([op, len(piece) - 1]) + piece
    return out

tick = b"\x04\x50"          # advance 20 s, run timers
send = b"\x05\x07"          # send something
write_all = b"\x0a"
busy = b"\x08"
server_input = (frame(1, b"hello", mask=mask) + frame(1, b"frag", fin=False, mask=mask)
                + frame(9, b"p", mask=mask) + frame(0, b"ment", mask=mask)
                + frame(1, bytes([0xf4, 0x90, 0x80, 0x80]), mask=mask))
write("connection_server", "messages", b"\x00" + feed(server_input) + send + write_all + tick + tick)
write("connection_server", "close", b"\x02" + feed(frame(8, b"\x03\xe8", mask=mask)) + write_all)
write("connection_server", "flood", b"\x01" + feed(frame(9, b"x", mask=mask) * 40) + b"\x06\x01")
# Busy: a close behind messages the application has not taken, read the
# way the driver reads, then answered once the application catches up.
write("connection_server", "busy", b"\x00" + busy + feed(server_input + frame(8, b"\x03\xe8", mask=mask), op=2)
      + b"\x06\x02" + b"\x07" + busy + b"\x09" + write_all)
client_input = frame(1, b"hello") + frame(2, b"\x00" * 300, fin=False) + frame(0, b"", fin=True) + frame(8, b"")
write("connection_client", "messages", b"\x02" + feed(client_input) + send + write_all)
write("connection_client", "timeouts", b"\x00" + send + tick + tick + tick + b"\x07")
write("connection_client", "eof", b"\x00" + feed(client_input) + b"\x07" + write_all)

# Envelopes: both seed shapes and a malformed one.
os.makedirs("corpus/envelope", exist_ok=True)
write("envelope", "hydrogen", b'{"type":"event","id":"e-1","timestamp":"2025-02-26T18:45:00.000Z",'
      b'"channel":"print","action":"progress","data":{"percent":42},"auth":{"token":"t"}}')
write("envelope", "hyperiot", b'{"cmd":"FOLLOW","payload":"hi","contentType":"text/plain",'
      b'"timestamp":1700000000000,"params":{"channelId":"c1"}}')
write("envelope", "malformed", b'{"type":"command","data":[1,2,{"x":')

# permessage-deflate: an offer (even selector) and a compressed message (odd).
import zlib
os.makedirs("corpus/deflate", exist_ok=True)
write("deflate", "offer", b"\x00permessage-deflate; client_max_window_bits\n"
      b"permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
_c = zlib.compressobj(6, zlib.DEFLATED, -15)
_data = _c.compress(b"hello hello hello hello " * 50) + _c.flush(zlib.Z_SYNC_FLUSH)
write("deflate", "inflate", bytes([0x41]) + _data[:-4])

# Connections with permessage-deflate on (flag 4 of the first byte):
# compressed messages whole and fragmented, then compressed sends.
_c = zlib.compressobj(6, zlib.DEFLATED, -15)
_one = _c.compress("κόσμε hello ".encode() * 40) + _c.flush(zlib.Z_SYNC_FLUSH)
_two = _c.compress(b"again " * 100) + _c.flush(zlib.Z_SYNC_FLUSH)
deflated = (frame(1, _one[:-4], mask=mask, rsv=4) + frame(2, _two[:20], fin=False, mask=mask, rsv=4)
            + frame(9, b"p", mask=mask) + frame(0, _two[20:-4], mask=mask))
write("connection_server", "deflate", b"\x04" + feed(deflated) + send + b"\x05\x06" + write_all + tick)
_c = zlib.compressobj(6, zlib.DEFLATED, -15)
_one = _c.compress(b"server says hi " * 30) + _c.flush(zlib.Z_SYNC_FLUSH)
write("connection_client", "deflate", b"\x1c" + feed(frame(1, _one[:-4], rsv=4)) + send + write_all)

# The driver (ws_async::fuzzing::driver): flags, then ops (op, arg, ...):
# 0-1 a peer frame (arg: kind; then a length byte), 2 raw bytes, 3 read
# Pending, 4 read error/EOF, 5 short write, 6 write Pending, 7 write error,
# 8 send, 9 try_send, 10 fragment, 11 close, 12 ping, 13 receive, 14 sleep,
# 15 drop the connection's future after some rounds.
def driver_frame(kind, length, fin=True):
    return bytes([0, kind | (0 if fin else 0x40), length])
os.makedirs("corpus/driver", exist_ok=True)
text_send = b"\x08\x81" + b"x" * 16
write("driver", "server-echo", b"\x40" + text_send + driver_frame(0, 2) + b"abcdefgh"
      + driver_frame(3, 1) + b"ping" + b"\x05\x10\x06\x00" + b"\x0d\x02"
      + b"\x00\x05\x00")
write("driver", "server-slow-close", b"\x44" + b"\x0e\x05" + driver_frame(1, 4) + b"y" * 16
      + driver_frame(0, 1) + b"zzzz" + b"\x00\x05\x00" + b"\x04\x01")
write("driver", "server-fragments", b"\x42" + b"\x0a\x81" + b"f" * 16 + b"\x03" + b"\x0a\xc1" + b"g" * 16
      + b"\x03" + b"\x08\x01" + b"h" * 16 + b"\x0b\x40\x03" + b"\x03\x00" + driver_frame(1, 2)
      + b"i" * 8 + b"\x06\x00\x05\x03")
write("driver", "client", b"\x41" + text_send + b"\x0d\x07" + b"\x0c\x03" + b"\x0b\x3f\x02"
      + b"\x0d\x01" + b"\x0f\x10")
write("driver", "client-deflate", b"\xc3" + text_send + text_send + b"\x0d\x05" + b"\x0e\x20")

os.makedirs("corpus/origin", exist_ok=True)
write("origin", "same", b"https://App.Example:443\napp.example:443\nhttps://app.example")
write("origin", "ipv6", b"http://[::1]:8080\n[::1]:8080\nhttp://[::1]:8080,https://a")
write("origin", "tricks", b"https://app.example.evil\napp.example\nhttps://app.example")

os.makedirs("corpus/credentials", exist_ok=True)
write("credentials", "key", b"Key right key")
write("credentials", "bearer", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXdyb25n")
write("credentials", "odd", b"bEaReR    \x7f\xff")

# channels: a flag byte, then ops (op, arg[, shape]); see ws-channels' fuzzing.rs.
os.makedirs("corpus/channels", exist_ok=True)
def cmd(session, action, channel=0):
    return bytes([5, session, (channel << 4) | action])
open2 = bytes([0, 1, 0, 0x82])  # u1 on node 0, u2 on node 1
write("channels", "create-join-publish", b"\x00" + open2 + cmd(0, 0) + cmd(1, 1) + cmd(0, 3) + cmd(1, 3) + bytes([1, 1]))
write("channels", "kick-ban-role", b"\x00" + open2 + cmd(0, 0) + cmd(2, 1) + cmd(0, 8) + cmd(0, 4) + cmd(2, 5) + cmd(1, 1) + cmd(0, 6))
write("channels", "slow-lost", b"\x01" + open2 + cmd(0, 0) + cmd(1, 1) + bytes([3, 0x81]) + cmd(0, 3) + bytes([3, 1]) + cmd(0, 3))
write("channels", "topics-time", b"\x00" + open2 + cmd(0, 10, 2) + cmd(1, 10, 2) + bytes([2, 200]) + cmd(0, 11, 2) + bytes([1, 0]))
# Backend work held (op 2, arg 0xC1) and run an item at a time (arg 0x80):
# a publication while a member's recovery read is in flight.
hold, step, release = bytes([2, 0xC1]), bytes([2, 0x80]), bytes([2, 0xC0])
write("channels", "held", b"\x00" + open2 + cmd(2, 0) + cmd(1, 1) + cmd(2, 3) + hold + cmd(2, 3) + cmd(1, 1) + step + step + cmd(2, 3) + release)
write("channels", "raw", b"\x00" + open2 + bytes([4, 0, 20]) + b'{"type":"command"}xx' + cmd(0, 13) + cmd(0, 9))

# crypto: a mode byte (0 hello, 1 accept, 2 record, 3 end-to-end JSON), then
# the bytes; see ws-crypto's fuzzing.rs.
os.makedirs("corpus/crypto", exist_ok=True)
write("crypto", "hello", bytes([0, 1, 1]) + bytes([9] * 32) + bytes([2, 1, 2]))
write("crypto", "accept", bytes([1, 2, 1]) + bytes([7] * 32) + bytes([1, 1]) + bytes([8] * 32) + bytes(32))
write("crypto", "record-aes", bytes([2, 3]) + bytes(8) + b"hello" + bytes(16))
write("crypto", "record-chacha", bytes([6, 4]) + bytes(7) + b"\x01" + bytes(20))
write("crypto", "e2e-msg", b'\x03{"e2e":"msg","epoch":1,"seq":1,"nonce":"AAAAAAAAAAAAAAAA","ct":"AAAAAAAAAAAAAAAAAAAAAA"}')
write("crypto", "e2e-keys", b'\x03{"e2e":"keys","epoch":2,"keys":{"b":"' + b"A" * 107 + b'"}}')

# mls: a mode byte (0 handshake message, 1 key package, 2 message for a
# member, 3 changes to a genuine key package, commit or message: the next
# byte picks which, the rest is XORed in); see ws-crypto's fuzzing.rs.
os.makedirs("corpus/mls", exist_ok=True)
write("mls", "public-message", bytes([0, 0, 1, 0, 1]) + bytes([0, 4]) + b"room" + bytes(8) + bytes([1, 0, 0, 0, 0, 3]))
write("mls", "key-package", bytes([1, 0, 1, 0, 5, 0, 1]) + bytes(40))
write("mls", "private-message", bytes([2, 0, 1, 0, 2, 0, 4]) + b"room" + bytes(7) + bytes([1, 1]))
write("mls", "change-key-package", bytes([3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40]))
write("mls", "change-commit", bytes([3, 1]) + bytes(30) + bytes([1]))
write("mls", "change-message", bytes([3, 2]) + bytes(20) + bytes([0x80]))

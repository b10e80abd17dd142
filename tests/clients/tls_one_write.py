"""A client that sends its SSL request and its TLS ClientHello in one write (rwsplit may read both
at once; the ClientHello must still reach the TLS handshake), then logs in over TLS and quits.
    python3 tls_one_write.py HOST PORT CA_FILE
"""
import socket, ssl, struct, hashlib, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def scramble(pw, salt):
    a = hashlib.sha1(pw).digest(); b = hashlib.sha1(a).digest(); c = hashlib.sha1(salt + b).digest()
    return bytes(x ^ y for x, y in zip(a, c))
s = socket.create_connection((host, port)); s.settimeout(10)
def recv_exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError("closed")
        b += c
    return b
h = recv_exact(4); g = recv_exact(h[0] | h[1] << 8 | h[2] << 16)
i = g.index(b"\0", 1); salt = g[i + 5:i + 13] + g[i + 32:i + 44]
caps = 0x200 | 0x8000 | 0x80000 | 0x8 | 0x800
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_side=False)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = out.read()
# The SSL request and the ClientHello in one write.
s.sendall(struct.pack("<I", 32)[:3] + b"\x01" + struct.pack("<IIB23x", caps, 1 << 24, 45) + hello)
while True:
    try:
        tls.do_handshake(); break
    except ssl.SSLWantReadError:
        pending = out.read()
        if pending: s.sendall(pending)
        data = s.recv(65536)
        if not data: raise EOFError("closed in the handshake")
        inc.write(data)
s.sendall(out.read())
def send(seq, payload):
    tls.write(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload); s.sendall(out.read())
def read():
    buf = b""
    while True:
        try:
            buf += tls.read(65536)
        except ssl.SSLWantReadError:
            pass
        if len(buf) >= 4 and len(buf) >= 4 + (buf[0] | buf[1] << 8 | buf[2] << 16):
            return buf[4:4 + (buf[0] | buf[1] << 8 | buf[2] << 16)]
        inc.write(s.recv(65536))
login = struct.pack("<IIB23x", caps, 1 << 24, 45) + b"app\0" + bytes([20]) + scramble(b"app", salt) + b"app\0mysql_native_password\0"
send(2, login)
ok = read()
assert ok[0] == 0, ok
# COM_QUIT: rwsplit ends TLS with a close_notify before it closes the connection.
send(0, b"\x01")
clean = False
for _ in range(100):
    data = s.recv(65536)
    if data:
        inc.write(data)
    try:
        if tls.read(65536) == b"":
            clean = True
            break
    except ssl.SSLZeroReturnError:
        clean = True
        break
    except ssl.SSLWantReadError:
        pass
    if not data:
        break
assert clean, "the connection closed without a TLS close_notify"
print("ok", tls.version())

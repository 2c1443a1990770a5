#!/usr/bin/env python3
"""Talks msgr1 to a live ceph-mon as a (lossless) mon peer and records what the monitor sends.

Usage: start a monitor (shared/ceph-mon/start.sh, e.g. V1_PORT=16889 V2_PORT=0), then
  python3 live_mon_peer.py 16889
from this folder. It sends an MPing and a KEEPALIVE2, records the reply stream, sends CLOSE.
See README.md: this is where ack.hex, connect_reply_mon_peer.hex and mon_peer_s2c.bin come from.
"""
import socket, struct, time, random
def crc(seed, data):
    c = seed
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c
REQ = (1<<18)|(1<<25)|(1<<41)|(1<<48)|(1<<58)
FEAT = REQ | (1<<1) | (1<<23) | (1<<42) | (1<<6)
import sys
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 16789
s = socket.create_connection(("127.0.0.1", PORT))
s.settimeout(3)
sent = bytearray(); recv = bytearray()
def send(b):
    sent.extend(b); s.sendall(b)
def readn(n):
    out = b''
    while len(out) < n:
        c = s.recv(n - len(out))
        if not c: raise EOFError(f'eof after {len(out)}/{n}')
        out += c
    recv.extend(out); return out
def addr(nonce, port):
    return struct.pack('<II', 0, nonce) + struct.pack('>HH', 2, port) + bytes([127,0,0,1]) + bytes(120)
send(b'ceph v027')
hs = readn(9 + 272)
print('server banner', hs[:9])
send(addr(random.getrandbits(32), 0))
name = b'x'
auth = bytes([1]) + struct.pack('<I', 1) + struct.pack('<I', len(name)) + name + struct.pack('<Q', 0)
send(struct.pack('<QIIIIIIB', FEAT, 1, 1, 0, 13, 1, len(auth), 0) + auth)
r = readn(26)
tag, feat, gseq, cseq, proto, alen, flags = struct.unpack('<BQIIIIB', r)
print('reply tag', tag, hex(feat), gseq, cseq, proto, alen, flags)
readn(alen)
if tag == 13:
    print('acked', struct.unpack('<Q', readn(8)))
    send(struct.pack('<Q', 0))
# one MPing (type 2, empty front), then a KEEPALIVE2
h = struct.pack('<QQHHHIIIHBqHH', 1, 0, 2, 127, 1, 0, 0, 0, 0, 1, 99, 1, 0)
send(b'\x07' + h + struct.pack('<I', crc(0, h)) + struct.pack('<IIIQB', 0, 0, 0, 0, 1))
send(b'\x0e' + struct.pack('<II', 1700000000, 123456789))
deadline = time.time() + 4
open_at = len(recv)
try:
    while time.time() < deadline:
        c = s.recv(4096)
        if not c: print('eof'); break
        recv.extend(c)
except socket.timeout:
    pass
print('open-state bytes from mon:', recv[open_at:].hex())
send(b'\x06')
try:
    c = s.recv(4096); recv.extend(c); print('after CLOSE:', c.hex())
except Exception as e:
    print('after CLOSE:', e)
open('mon_peer_s2c.bin', 'wb').write(recv)
open('ack.hex', 'w').write(recv[-9:].hex() + '\n')
open('connect_reply_mon_peer.hex', 'w').write(recv[281:307].hex() + '\n')

#!/usr/bin/env python3
"""Regenerates the golden vectors in this folder from the real Ceph capture.

Usage (from this folder): python3 extract.py [path/to/ceph-cli-v1.pcapng]
Needs tshark. See README.md for what each file holds.
"""
import subprocess
import sys

PCAP = sys.argv[1] if len(sys.argv) > 1 else "../../../../../shared/ceph-mon/captures/ceph-cli-v1.pcapng"
MON_PORT = "16789"

fields = subprocess.run(
    ["tshark", "-r", PCAP, "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport",
     "-e", "tcp.dstport", "-e", "tcp.payload"],
    capture_output=True, text=True, check=True).stdout

# Reassemble each direction of each TCP connection (loopback: no loss, no reordering).
streams = {}
for line in fields.splitlines():
    parts = line.split("\t")
    if len(parts) < 4 or not parts[3]:
        continue
    stream, _sport, dport, payload = parts
    direction = "c2s" if dport == MON_PORT else "s2c"
    streams.setdefault((int(stream), direction), bytearray()).extend(bytes.fromhex(payload))

for (stream, direction), data in sorted(streams.items()):
    with open(f"stream{stream}_{direction}.bin", "wb") as f:
        f.write(data)

c2s, s2c = streams[(0, "c2s")], streams[(0, "s2c")]


def hexfile(name, data):
    with open(name, "w") as f:
        for i in range(0, len(data), 32):
            f.write(data[i:i + 32].hex() + "\n")


# Offsets: see README.md (handshake layout, then frames in order).
hexfile("banner.hex", s2c[0:9])
hexfile("addr_server.hex", s2c[9:145])          # the monitor's own address
hexfile("addr_peer_seen.hex", s2c[145:281])     # the client's address as the monitor sees it
hexfile("addr_client.hex", c2s[9:145])          # the client's own address (port 0, random nonce)
hexfile("connect.hex", c2s[145:178])
hexfile("connect_reply_seq.hex", s2c[281:307])  # tag SEQ, followed by le64 acked seq
hexfile("keepalive2.hex", c2s[186:195])
hexfile("keepalive2_ack.hex", s2c[315:324])
hexfile("msg_mauth.hex", c2s[195:330])          # type 17, client -> mon
hexfile("msg_mauth_reply.hex", s2c[324:423])    # type 18, mon -> client
hexfile("msg_monmap.hex", s2c[423:668])         # type 4, mon -> client

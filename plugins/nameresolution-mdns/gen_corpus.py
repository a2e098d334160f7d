#!/usr/bin/env python3
"""Writes fuzz-corpus/: crafted mDNS packets for fuzz_dns_msg.c.

Run from this folder after changing the list; the files are kept in the
repository so that `make check` needs no Python.
"""
import os
import struct

def name(*labels):
    out = b""
    for l in labels:
        b = l.encode() if isinstance(l, str) else l
        out += bytes([len(b)]) + b
    return out + b"\0"

def ptr(off):
    return struct.pack(">H", 0xC000 | off)

def header(id_=0, flags=0, qd=0, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)

def rr(owner, type_, class_, ttl, rdata):
    return owner + struct.pack(">HHIH", type_, class_, ttl, len(rdata)) + rdata

A, PTR, TXT, AAAA, SRV, NSEC = 1, 12, 16, 28, 33, 47
RESP = 0x8400
corpus = {}

corpus["query-ptr"] = header(qd=1) + name("alpha", "local") + struct.pack(">HH", PTR, 1)
corpus["query-legacy-qu"] = header(id_=0x1234, qd=2) + \
    name("beta", "local") + struct.pack(">HH", PTR, 0x8001) + \
    name("dapr-7-host", "local") + struct.pack(">HH", A, 1)

inst = name("host:42", "alpha", "local")
host = name("dapr-42-host", "local")
corpus["response-plain"] = header(flags=RESP, an=4) + \
    rr(name("alpha", "local"), PTR, 1, 120, inst) + \
    rr(inst, SRV, 0x8001, 120, struct.pack(">HHH", 0, 0, 50002) + host) + \
    rr(inst, TXT, 0x8001, 120, b"\x05alpha") + \
    rr(host, A, 0x8001, 120, bytes([10, 200, 0, 1]))

# Compressed, zeroconf style: answers point back at earlier names.
p = header(flags=RESP, an=1, ar=4)
svc_off = len(p)
p += name("beta", "local")
p += struct.pack(">HHIH", PTR, 1, 4500, 10)
inst_off = len(p)
p += b"\x07host:99" + ptr(svc_off)
srv_rd_host_off = len(p) + 2 + 10 + 6
p += ptr(inst_off) + struct.pack(">HHIH", SRV, 0x8001, 120, 6 + 7 + 2)
p += struct.pack(">HHH", 0, 0, 7002) + b"\x06myhost" + ptr(svc_off + 5)
p += ptr(inst_off) + struct.pack(">HHIH", TXT, 0x8001, 4500, 10) + b"\x04beta\x04k=v1"
p += ptr(srv_rd_host_off) + struct.pack(">HHIH", A, 0x8001, 120, 4) + bytes([10, 200, 0, 2])
p += ptr(srv_rd_host_off) + struct.pack(">HHIH", AAAA, 0x8001, 120, 16) + bytes(range(16))
corpus["response-compressed"] = p

corpus["response-goodbye"] = header(flags=RESP, an=2) + \
    rr(name("alpha", "local"), PTR, 1, 0, inst) + \
    rr(inst, SRV, 0x8001, 0, struct.pack(">HHH", 0, 0, 50002) + host)

corpus["unknown-types"] = header(flags=RESP, an=2) + \
    rr(name("x", "local"), NSEC, 0x8001, 120, b"\xc0\x0c\x00\x04\x40\x00\x00\x08") + \
    rr(name("x", "local"), TXT, 1, 120, b"")

# Malicious ones: all must be rejected without harm.
corpus["loop-self"] = header(qd=1) + ptr(12) + struct.pack(">HH", PTR, 1)
q = header(qd=2) + b"\x01a" + ptr(20) + struct.pack(">HH", 1, 1)
q += b"\x01b" + ptr(12) + struct.pack(">HH", 1, 1)
corpus["loop-mutual"] = q
corpus["pointer-forward"] = header(qd=1) + ptr(40) + struct.pack(">HH", 1, 1) + b"\0" * 40
corpus["label-64"] = header(qd=1) + b"\x40" + b"a" * 64 + b"\0" + struct.pack(">HH", 1, 1)
long_name = b"".join(b"\x3f" + b"x" * 63 for _ in range(4)) + b"\0"
corpus["name-256"] = header(qd=1) + long_name + struct.pack(">HH", 1, 1)
corpus["srv-overrun"] = header(flags=RESP, an=1) + \
    rr(inst, SRV, 1, 120, struct.pack(">HHH", 0, 0, 1) + b"\x05ab")
corpus["counts-lie"] = header(flags=RESP, qd=1, an=0xFFFF) + name("a") + struct.pack(">HH", 1, 1)

os.makedirs("fuzz-corpus", exist_ok=True)
for k, v in corpus.items():
    with open(os.path.join("fuzz-corpus", k), "wb") as f:
        f.write(v)
print(len(corpus), "files")

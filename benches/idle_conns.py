#!/usr/bin/env python3
"""Holds N idle client connections to a relay (ringrelay's protocol) or to nats-server, for
benches/idle_memory.sh: connects them all, waits until each is registered (WELCOME, or NATS's
PONG), answers every heartbeat PING while it holds them, and prints one line when they are all
up ("up N") and another once each has answered at least one heartbeat ("heartbeat N"), then
holds them until its standard input closes. Every wait is bounded (--timeout-s).

usage: idle_conns.py {relay|nats} PORT N [--timeout-s S]
"""
import argparse
import selectors
import socket
import struct
import sys
import time

HELLO, WELCOME, PING, PONG = 0x01, 0x02, 0x30, 0x31


def relay_hello(i):
    client_id = f"idle-{i}".encode()
    body = struct.pack("<HB", 1, len(client_id)) + client_id + struct.pack("<H", 0)
    return struct.pack("<IBB", len(body), HELLO, 0) + body


class Relay:
    """One ringrelay connection: frames are body_len u32, kind u8, flags u8, body."""

    def __init__(self, sock, i):
        self.sock, self.buf, self.up, self.pinged = sock, b"", False, False
        sock.sendall(relay_hello(i))

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 6:
            body_len, kind, _flags = struct.unpack_from("<IBB", self.buf)
            if len(self.buf) < 6 + body_len:
                return
            body, self.buf = self.buf[6 : 6 + body_len], self.buf[6 + body_len :]
            if kind == WELCOME:
                self.up = True
            elif kind == PING:
                self.sock.sendall(struct.pack("<IBB", 8, PONG, 0) + body)
                self.pinged = True


class Nats:
    """One NATS connection: CONNECT, then a PING whose PONG says it is registered."""

    def __init__(self, sock, _i):
        self.sock, self.buf, self.up, self.pinged, self.ponged = sock, b"", False, False, False
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')

    def feed(self, data):
        self.buf += data
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line == b"PONG":
                self.up = True
            elif line == b"PING":
                self.sock.sendall(b"PONG\r\n")
                self.pinged = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["relay", "nats"])
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--timeout-s", type=float, default=120)
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout_s
    sel = selectors.DefaultSelector()
    conns = []
    make = Relay if args.kind == "relay" else Nats
    for i in range(args.n):
        sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        conn = make(sock, i)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    said = set()
    while True:
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {sum(c.up for c in conns)} up, "
                     f"{sum(c.pinged for c in conns)} answered a heartbeat")
        for key, _ in sel.select(timeout=0.5):
            data = key.fileobj.recv(65536)
            if not data:
                sys.exit("the server closed a connection")
            key.data.feed(data)
        for what, done in (("up", all(c.up for c in conns)),
                           ("heartbeat", all(c.pinged for c in conns))):
            if done and what not in said:
                said.add(what)
                print(f"{what} {len(conns)}", flush=True)
        if "heartbeat" in said:
            break
    # Hold them (still answering heartbeats) until told to stop.
    stdin = sys.stdin.buffer
    sel.register(stdin, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select(timeout=1):
            if key.data is None:
                if not stdin.read1(4096):
                    return
                continue
            data = key.fileobj.recv(65536)
            if not data:
                sys.exit("the server closed a connection")
            key.data.feed(data)


if __name__ == "__main__":
    main()

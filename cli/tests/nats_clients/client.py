#!/usr/bin/env python3
"""One acceptance scenario of the NATS client protocol, run with nats-py (2.16.0).

Usage: client.py SCENARIO URL [URL ...]

Prints "PASS SCENARIO: detail" and exits 0, or "FAIL SCENARIO: reason" and exits 1. Every
wait is bounded; the test that runs this script (cli/tests/nats_clients.rs) also kills it
after its own bound. The same scenarios are written for async-nats (in that test) and for
nats.c (client.c beside this file), with the same expectations.

Scenario "reconnect" talks to the test: once connected it prints "CONNECTED HOST:PORT" (the
node it is on, which the test then kills) and waits to be reconnected to another node.
"""

import asyncio
import sys
import time

import nats
import nats.errors

WAIT = 5.0  # bound on one wait for something a server does promptly
REQUEST_TIMEOUT = 2.0
# After the last expected message, how long a subscription must stay quiet (no extra copy).
QUIET = 0.1


class Failure(Exception):
    pass


def check(cond, reason):
    if not cond:
        raise Failure(reason)


async def connect(urls, **kwargs):
    opts = dict(
        servers=urls,
        dont_randomize=True,
        connect_timeout=WAIT,
        allow_reconnect=False,
        max_reconnect_attempts=0,
    )
    opts.update(kwargs)
    return await nats.connect(**opts)


async def next_msg(sub, what, timeout=WAIT):
    try:
        return await sub.next_msg(timeout=timeout)
    except nats.errors.TimeoutError:
        raise Failure(f"no message for {what} within {timeout}s")


async def round_trip(conn):
    """A round trip through the server on `conn`: a message to a fresh inbox subscribed on the
    same connection comes back, so the server has taken every operation sent before it (the
    SUBs above all). nats-py's flush() is no such barrier: it writes PING to the socket at once,
    ahead of commands still queued for its flusher task, so its PONG can come back before the
    server has seen a SUB made just before it."""
    inbox = conn.new_inbox()
    sub = await conn.subscribe(inbox)
    await conn.publish(inbox, b"sync")
    await next_msg(sub, "the round trip through the server")
    await sub.unsubscribe()


async def no_more(sub, what):
    """Fails if a message comes to `sub` within QUIET seconds."""
    try:
        msg = await sub.next_msg(timeout=QUIET)
    except nats.errors.TimeoutError:
        return
    raise Failure(f"{what}: unexpected extra message {msg.subject} {msg.data!r}")


async def pubsub(urls):
    sub_conn = await connect(urls)
    pub_conn = await connect(urls)
    sub = await sub_conn.subscribe("ps.greet")
    other = await sub_conn.subscribe("ps.other")
    await round_trip(sub_conn)
    for i in range(3):
        await pub_conn.publish("ps.greet", f"m{i}".encode())
    await pub_conn.flush(timeout=WAIT)
    for i in range(3):
        msg = await next_msg(sub, "ps.greet")
        check(msg.subject == "ps.greet", f"subject {msg.subject!r}")
        check(msg.data == f"m{i}".encode(), f"message {i}: payload {msg.data!r}")
    await no_more(sub, "ps.greet")
    await no_more(other, "ps.other (nothing published there)")
    await sub_conn.close()
    await pub_conn.close()
    return "3 messages in order"


async def queue(urls):
    total = 20
    members = []
    for _ in range(2):
        conn = await connect(urls)
        work = await conn.subscribe("q.work", queue="workers")
        done = await conn.subscribe("q.done")
        await round_trip(conn)
        members.append((conn, work, done))
    pub_conn = await connect(urls)
    for i in range(total):
        await pub_conn.publish("q.work", str(i).encode())
    # Not in the group: every member gets it, after the work (one publisher's order).
    await pub_conn.publish("q.done", b"end")
    await pub_conn.flush(timeout=WAIT)
    got = []
    counts = []
    for n, (conn, work, done) in enumerate(members):
        await next_msg(done, f"q.done on member {n}")
        mine = 0
        while True:
            try:
                msg = await work.next_msg(timeout=QUIET)
            except nats.errors.TimeoutError:
                break
            got.append(int(msg.data))
            mine += 1
        counts.append(mine)
        await conn.close()
    await pub_conn.close()
    check(
        sorted(got) == list(range(total)),
        f"each of {total} messages to exactly one member; got {sorted(got)} (per member {counts})",
    )
    return f"{total} messages split {counts[0]}+{counts[1]}"


# Published in this order; what each pattern must receive, in order.
WILDCARD_PUBLISHES = ["wc", "other.a", "wc.a.y", "wc.b", "wc.a.z"]
WILDCARD_EXPECT = {
    "wc.*": ["wc.b"],
    "wc.>": ["wc.a.y", "wc.b", "wc.a.z"],
    "wc.*.z": ["wc.a.z"],
}


async def wildcards(urls):
    sub_conn = await connect(urls)
    pub_conn = await connect(urls)
    subs = {}
    for pattern in WILDCARD_EXPECT:
        subs[pattern] = await sub_conn.subscribe(pattern)
    await round_trip(sub_conn)
    for subject in WILDCARD_PUBLISHES:
        await pub_conn.publish(subject, subject.encode())
    await pub_conn.flush(timeout=WAIT)
    for pattern, want in WILDCARD_EXPECT.items():
        got = []
        for _ in want:
            msg = await next_msg(subs[pattern], pattern)
            check(msg.data == msg.subject.encode(), f"{pattern}: {msg.subject} with {msg.data!r}")
            got.append(msg.subject)
        check(got == want, f"{pattern}: want {want}, got {got}")
        await no_more(subs[pattern], pattern)
    await sub_conn.close()
    await pub_conn.close()
    return "wc.* wc.> wc.*.z as expected"


async def flush(urls):
    count = 100
    sub_conn = await connect(urls)
    pub_conn = await connect(urls)
    sub = await sub_conn.subscribe("fl.data")
    await round_trip(sub_conn)
    for i in range(count):
        await pub_conn.publish("fl.data", str(i).encode())
    started = time.monotonic()
    try:
        await pub_conn.flush(timeout=WAIT)
    except nats.errors.TimeoutError:
        raise Failure(f"flush got no PONG within {WAIT}s")
    took = time.monotonic() - started
    for i in range(count):
        msg = await next_msg(sub, f"fl.data message {i}")
        check(msg.data == str(i).encode(), f"message {i}: payload {msg.data!r}")
    await sub_conn.close()
    await pub_conn.close()
    return f"flush after {count} publishes took {took * 1000:.1f} ms; all arrived in order"


async def request(urls):
    responder = await connect(urls)
    requester = await connect(urls)
    seen_replies = []

    async def answer(msg):
        seen_replies.append(msg.reply)
        if msg.reply:
            await responder.publish(msg.reply, b"echo:" + msg.data)

    await responder.subscribe("svc.echo", cb=answer)
    await round_trip(responder)
    for i in range(3):
        body = f"ping-{i}".encode()
        try:
            reply = await requester.request("svc.echo", body, timeout=REQUEST_TIMEOUT)
        except nats.errors.TimeoutError:
            raise Failure(
                f"request {i} timed out after {REQUEST_TIMEOUT}s "
                f"(reply subjects the responder saw: {seen_replies!r})"
            )
        except nats.errors.NoRespondersError:
            raise Failure(f"request {i}: no responders, but one is subscribed")
        check(reply.data == b"echo:" + body, f"request {i}: reply {reply.data!r}")
    await responder.close()
    await requester.close()
    return f"3 requests answered (reply subject {seen_replies[0]})"


async def headers(urls):
    sub_conn = await connect(urls)
    pub_conn = await connect(urls)
    sub = await sub_conn.subscribe("hdr.a")
    await round_trip(sub_conn)
    sent = {"X-Test": "v1", "X-Other": "two words"}
    await pub_conn.publish("hdr.a", b"body", headers=sent)
    await pub_conn.publish("hdr.a", b"plain")
    await pub_conn.flush(timeout=WAIT)
    msg = await next_msg(sub, "hdr.a with headers")
    check(msg.data == b"body", f"payload {msg.data!r}")
    got = dict(msg.headers or {})
    for key, value in sent.items():
        check(got.get(key) == value, f"header {key}: want {value!r}, got headers {got!r}")
    plain = await next_msg(sub, "hdr.a without headers")
    check(plain.data == b"plain", f"second payload {plain.data!r}")
    check(not plain.headers, f"a message published without headers has {plain.headers!r}")
    await sub_conn.close()
    await pub_conn.close()
    return "2 headers carried, none on the plain message"


async def no_responders(urls):
    requester = await connect(urls)
    started = time.monotonic()
    try:
        reply = await requester.request("nobody.home", b"x", timeout=REQUEST_TIMEOUT)
    except nats.errors.NoRespondersError:
        took = time.monotonic() - started
        await requester.close()
        return f"no responders error after {took * 1000:.1f} ms"
    except nats.errors.TimeoutError:
        raise Failure(f"timed out after {REQUEST_TIMEOUT}s instead of a no responders error")
    raise Failure(f"got a reply {reply.data!r} from nobody")


def host_port(url):
    return f"{url.hostname}:{url.port}" if url else "none"


async def reconnect(urls):
    reconnected = asyncio.Event()

    async def on_reconnect():
        reconnected.set()

    conn = await connect(
        urls,
        allow_reconnect=True,
        max_reconnect_attempts=50,
        reconnect_time_wait=0.1,
        reconnected_cb=on_reconnect,
    )
    before = await conn.subscribe("rc.before")
    await round_trip(conn)
    await conn.publish("rc.before", b"one")
    msg = await next_msg(before, "rc.before on the first node")
    check(msg.data == b"one", f"payload {msg.data!r}")
    first = host_port(conn.connected_url)
    print(f"CONNECTED {first}", flush=True)
    try:
        await asyncio.wait_for(reconnected.wait(), timeout=20)
    except asyncio.TimeoutError:
        raise Failure("not reconnected within 20s after the node was killed")
    second = host_port(conn.connected_url)
    print(f"RECONNECTED {second}", flush=True)
    check(second != first, f"reconnected to the killed node {first}")
    # The subscription made before is made again on the new node by the client.
    await conn.publish("rc.before", b"two")
    msg = await next_msg(before, "rc.before after the reconnect")
    check(msg.data == b"two", f"payload {msg.data!r}")
    after = await conn.subscribe("rc.after")
    await round_trip(conn)
    await conn.publish("rc.after", b"three")
    msg = await next_msg(after, "rc.after on the second node")
    check(msg.data == b"three", f"payload {msg.data!r}")
    await conn.close()
    return f"moved from {first} to {second}; pub/sub works there"


SCENARIOS = {
    "pubsub": pubsub,
    "queue": queue,
    "wildcards": wildcards,
    "flush": flush,
    "request": request,
    "headers": headers,
    "no_responders": no_responders,
    "reconnect": reconnect,
}


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in SCENARIOS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(SCENARIOS)}}} URL [URL ...]", file=sys.stderr)
        return 2
    name, urls = sys.argv[1], sys.argv[2:]
    try:
        detail = asyncio.run(asyncio.wait_for(SCENARIOS[name](urls), timeout=30))
    except Failure as e:
        print(f"FAIL {name}: {e}", flush=True)
        return 1
    except Exception as e:  # any client error is a failure of the scenario, with its reason
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"PASS {name}: {detail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

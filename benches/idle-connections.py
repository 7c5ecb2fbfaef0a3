#!/usr/bin/env python3
"""Opens N keep-alive connections to an HTTP/1.1 server, sends one request on each, and keeps
them open and idle until it is sent SIGTERM or SIGINT (scripts/bench-http section j).

    idle-connections.py [--tls] HOST PORT N [HEADER]

--tls speaks HTTPS without verifying the certificate (a loopback benchmark against the
gateway's self-signed one), so that a TLS connection's idle cost can be counted. Prints "ready OK FAILED" on stdout once every connection has had its answer (OK connections
got a 2xx and are still open), then waits. Connections are opened a few hundred at a time so
that the server's accept backlog never overflows.
"""

import asyncio
import signal
import ssl
import sys

AT_ONCE = 200


async def one(host, port, request, held, tls):
    """One connection, one request, its response read whole; the connection is kept."""
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
        print(f"connection failed: {error!r}", file=sys.stderr)
        return False
    held.append(writer)
    return 200 <= status < 300


async def main():
    args = sys.argv[1:]
    tls = None
    if args[:1] == ["--tls"]:
        args = args[1:]
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    if len(args) not in (3, 4):
        sys.exit(__doc__)
    host, port, count = args[0], int(args[1]), int(args[2])
    header = f"{args[3]}\r\n" if len(args) == 4 else ""
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n{header}\r\n".encode()
    held = []
    gate = asyncio.Semaphore(AT_ONCE)

    async def gated():
        async with gate:
            return await one(host, port, request, held, tls)

    results = await asyncio.gather(*(gated() for _ in range(count)))
    ok = sum(results)
    print(f"ready {ok} {count - ok}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for writer in held:
        writer.close()


asyncio.run(main())

"""The data folder's Chroma server behind a token: ``chroma run`` in a network namespace of
its own, reachable only through this relay, which lets in the connections whose first
request carries the folder's token.

Chroma 1.5.9's server (Rust) ignores the old token-authentication settings: any local
user who can reach its port can read and write the gallery (checked in
tests/test_private_data.py). So :func:`store.server.start_server` runs this module as
``unshare --user --map-root-user --net python -m store.relay ...``: inside the new
network namespace ``chroma run`` listens on its own loopback, which no other process on
the machine can reach, and this relay accepts on a listening socket the starting process
made on the machine's loopback (inherited as ``--listen-fd``). A connection whose first
request lacks the header ``X-Facesearch-Token: <token>`` gets ``401`` and is closed; one
that has it is joined to the server byte for byte (its later requests ride on it). The
token is in ``chroma-server.json`` in the private data folder (0600 in a 0700 folder).

When ``chroma run`` exits, so does the relay (and the supervisor starts both again); when
the relay dies, the server gets SIGTERM (PR_SET_PDEATHSIG). No streamlit here.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import hmac
import os
import signal
import socket
import struct
import subprocess
import sys

HEADER = b"x-facesearch-token"
MAX_HEAD = 64 * 1024
INNER_PORT = 8000  # chroma's port inside the namespace: nothing else listens there


def _loopback_up() -> None:
    """Bring up ``lo`` in this (new) network namespace: SIOCGIFFLAGS / SIOCSIFFLAGS."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), 0x8913, ifreq))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14s", b"lo", flags | 0x1, b"\0" * 14))
    finally:
        s.close()


def _token_ok(head: bytes, token: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == HEADER:
            return hmac.compare_digest(value.strip(), token)
    return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def _client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: bytes) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    if not _token_ok(head, token):
        body = b'{"error":"Unauthorized","message":"this gallery server takes requests from its data folder\'s owner only"}'
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        try:
            await writer.drain()
        finally:
            writer.close()
        return
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", INNER_PORT, limit=MAX_HEAD)
    except OSError:
        writer.close()
        return
    up_w.write(head)
    await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))


async def _serve(listen: socket.socket, token: bytes, chroma: subprocess.Popen) -> int:
    server = await asyncio.start_server(lambda r, w: _client(r, w, token), sock=listen, limit=MAX_HEAD)
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, chroma.wait)
    server.close()
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m store.relay")
    ap.add_argument("--listen-fd", type=int, required=True)
    ap.add_argument("--token-fd", type=int, required=True, help="a pipe the token is read from (never argv)")
    ap.add_argument("--pass-fd", type=int, action="append", default=[], help="kept open in chroma (the owner lock)")
    ap.add_argument("--log", required=True)
    ap.add_argument("chroma", nargs=argparse.REMAINDER, help="-- chroma run ... (its --port is INNER_PORT)")
    args = ap.parse_args(argv)
    with os.fdopen(args.token_fd, "rb") as fh:
        token = fh.read().strip()
    # Die with the process that started us (the supervisor), as chroma dies with us.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    _loopback_up()
    listen = socket.socket(fileno=args.listen_fd)
    cmd = [c for c in args.chroma if c != "--"]
    with open(args.log, "ab") as log:
        chroma = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=tuple(args.pass_fd),
                                  preexec_fn=lambda: ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM))
    signal.signal(signal.SIGTERM, lambda *_: chroma.terminate())
    code = asyncio.run(_serve(listen, token, chroma))
    return 1 if code is None else (code if code >= 0 else 128 - code)


if __name__ == "__main__":
    sys.exit(main())

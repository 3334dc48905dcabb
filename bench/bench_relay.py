"""What the database server's token relay (store/relay.py) costs a query.

The same random gallery (unit vectors, 128-d) is written to two Chroma servers started
on this machine in the same run: the data folder's own server, reached through its relay
in a network namespace (store.server.start_server, as `make run` starts it), and a bare
`chroma run` on loopback (the baseline). Then the same top-10 queries go to both, one at
a time, interleaved so that load on the machine hits both alike.

    python -m bench.bench_relay [--faces 20000] [--queries 500]

Last line: ``relay: p50 X ms through the relay, Y ms direct, ratio Z``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bare_server(folder: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("chroma")), "run", "--path", str(folder),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the bare chroma server did not start")


def _collection(client, x: np.ndarray):
    col = client.create_collection("bench", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    for i in range(0, len(x), 5000):
        part = x[i:i + 5000]
        col.add(ids=[str(j) for j in range(i, i + len(part))], embeddings=part)
    return col


def main(argv: list[str] | None = None) -> None:
    import chromadb

    from facesearch.settings import Settings
    from store.server import TOKEN_HEADER, start_server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.faces, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(len(x), args.queries, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        srv = start_server(Settings(home=Path(tmp) / "home"))
        bare, bare_url = _bare_server(Path(tmp) / "bare")
        try:
            host, port = srv.url.rsplit(":", 1)
            relayed = chromadb.HttpClient(host=host.split("//")[1], port=int(port),
                                          headers={TOKEN_HEADER: srv.token} if srv.token else None)
            direct = chromadb.HttpClient(host="127.0.0.1", port=int(bare_url.rsplit(":", 1)[1]))
            cols = {"relay": _collection(relayed, x), "direct": _collection(direct, x)}
            times: dict[str, list[float]] = {"relay": [], "direct": []}
            for v in q:
                for name, col in cols.items():
                    t0 = time.perf_counter()
                    col.query(query_embeddings=v[None], n_results=10)
                    times[name].append(time.perf_counter() - t0)
        finally:
            bare.terminate()
            bare.wait(20)
            srv.stop()
    p50 = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    p99 = {k: 1000 * float(np.percentile(v, 99)) for k, v in times.items()}
    print(f"barrier: {'network namespace + token relay' if srv.token else 'none (no namespaces here)'}")
    print(f"{args.faces:,} faces, {args.queries} queries: p99 {p99['relay']:.1f} ms relay, {p99['direct']:.1f} ms direct")
    print(f"relay: p50 {p50['relay']:.1f} ms through the relay, {p50['direct']:.1f} ms direct, "
          f"ratio {p50['relay'] / p50['direct']:.2f}")


if __name__ == "__main__":
    main()

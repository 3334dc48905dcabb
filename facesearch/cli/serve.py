"""``facesearch serve``: the database server and the dashboard, as ``make run`` starts them."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from facesearch.cli.common import _settings


def cmd_serve(args) -> int:
    """The data folder's Chroma server, then the dashboard on top of it (its process loads
    the default model and detector as it starts); the server stops
    when the dashboard does (Ctrl+C, SIGTERM, or the dashboard exiting). The server is
    supervised: if it dies it is started again (same port and folder, with backoff, one
    line on stderr each time); meanwhile the pages say the database is restarting."""
    import signal
    import subprocess

    from store.server import die_with_parent, start_server

    s = _settings(args)
    srv = start_server(s, port=args.db_port)
    where = "already running, shared" if not srv.owned else "started"
    print(f"gallery database server {srv.url} ({where}; data {s.chroma_path})", file=sys.stderr, flush=True)

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    dash = None
    try:
        if args.no_dashboard:
            while True:
                srv.supervise()
                time.sleep(0.5)
        app = Path(__file__).resolve().parents[2] / "app.py"
        env = {**os.environ, "FACESEARCH_HOME": str(s.home)}
        # `python -m streamlit` that first starts loading the default model and detector
        # in the dashboard's own process (components/launch.py): the first upload does
        # not wait for them.
        dash = subprocess.Popen([sys.executable, "-m", "components.launch", "run", str(app), "--server.port", str(args.port),
                                 *args.streamlit_args], env=env, cwd=str(app.parent),
                                preexec_fn=die_with_parent)
        # This thread started the server, so it restarts it too (the child's PDEATHSIG
        # follows the thread that forked it).
        while dash.poll() is None:
            srv.supervise()
            time.sleep(0.5)
        return dash.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        if dash is not None and dash.poll() is None:
            dash.terminate()
            try:
                dash.wait(20)
            except subprocess.TimeoutExpired:
                dash.kill()
        srv.stop()


def register(sub, common: argparse.ArgumentParser) -> None:
    """This module's sub-commands, on ``sub`` (``common``: the options every command takes)."""
    sv = sub.add_parser("serve", parents=[common], help="start the gallery's database server and the dashboard "
                        "(what `make run` does); every facesearch command then shares that server")
    sv.add_argument("--port", type=int, default=8501, help="the dashboard's port (default 8501)")
    sv.add_argument("--db-port", type=int, default=None, help="the database server's port (default: a free one)")
    sv.add_argument("--no-dashboard", action="store_true", help="only the database server, until Ctrl+C")
    sv.add_argument("streamlit_args", nargs="*", help="more `streamlit run` options, after --")
    sv.set_defaults(func=cmd_serve)

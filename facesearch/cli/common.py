"""What every command shares: settings from the common options, progress bars, --out."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from facesearch.settings import Settings, get_settings

if TYPE_CHECKING:
    from tqdm import tqdm


def _settings(args) -> Settings:
    s = get_settings()
    changes = {}
    if getattr(args, "home", None):
        changes["home"] = Path(args.home)
    if getattr(args, "model", None):
        changes["model"] = args.model
    if getattr(args, "detector", None):
        changes["detector"] = args.detector
    if getattr(args, "chroma_url", None):
        changes["chroma_url"] = args.chroma_url
    return s.with_(**changes) if changes else s


def progress_bar(quiet: bool = False, stages: bool = False) -> Callable[[int, int, str], None] | None:
    """The ``progress(done, total, what)`` callback of ingest, calibrate and evaluate as a
    tqdm bar on stderr (count, elapsed and time left); None when ``quiet``. ``what`` is
    the photo, shown after the count; with ``stages`` it names what is counted
    (evaluate's "model, task") in front of the bar. A count that starts over or a new
    stage starts a new bar."""
    if quiet:
        return None
    from tqdm import tqdm  # here: importing it costs a command that shows no bar 0.08 s

    bar: tqdm | None = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None or done < bar.n or total != bar.total or (stages and what != bar.desc):
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=what if stages else None, unit="photo", file=sys.stderr, mininterval=0.5,
                       dynamic_ncols=True)
        if not stages:
            bar.set_postfix_str(Path(what).name[:30], refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bar = None

    return progress


def add_worker_options(parser) -> None:
    """``--workers`` and ``--dask``: where photos are detected and embedded (ingest,
    evaluate, calibrate share the worker pool, :mod:`facesearch.embedding.workers`)."""
    parser.add_argument("--workers", type=int, help="worker processes for detection/embedding (default: one per core "
                        "this process may use, or FACESEARCH_WORKERS; with --dask local, the LocalCluster's workers)")
    parser.add_argument("--dask", metavar="local|tcp://HOST:8786",
                        help="detect and embed on a Dask cluster: a LocalCluster of processes, or a scheduler's address")


def _out_prefix(given: str) -> Path:
    """``--out PREFIX`` (a trailing .json/.csv dropped), its folder created."""
    out = Path(given)
    if out.suffix.lower() in (".json", ".csv"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _pct(v: Any, nd: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.{nd}f}%"

"""Photos through worker processes: the one pool that ingest, evaluation and calibration share.

``PhotoWorkers(workers, dask)`` runs a *job* on each photo and yields its results in
completion order. A job is a module-level function (pickled by reference)
``job(pipe, path, data, *args) -> dict`` (a plain, picklable dict with ``"path"``):
``pipe`` is the :class:`~facesearch.embedding.pipeline.Pipeline` of the run's
:class:`Work` (model, detector, settings) in the process that runs it; ``data`` is the
photo's bytes for a remote Dask worker (which does not see this machine's disk and gets
no embedding cache), else None (read ``path``, use the cache).

Where a job runs:

* in this process, with one worker or fewer than :data:`MIN_POOL` photos (not worth
  starting processes for);
* in ``workers`` spawned processes (TensorFlow is not fork-safe), each held to one
  thread per library (N processes on N cores: thread pools would fight over them); a
  worker builds a Work's pipeline once (models load once per worker) and keeps it for the
  later runs of the same ``PhotoWorkers`` (evaluation runs several models and tasks);
* on a Dask cluster: ``dask="local"`` (a LocalCluster of ``workers`` single-thread
  processes) or a scheduler address (``tcp://host:8786``). A worker that dies is
  replaced by Dask re-running its tasks elsewhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import multiprocessing as mp
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from facesearch.errors import ConfigError
from facesearch.settings import Settings
from facesearch.weights import quiet_tensorflow

# Fewer photos than this run in this process: starting workers and loading their models
# would cost more than it saves.
MIN_POOL = 8

# job(pipe, path, data, *args) -> dict with "path"
Job = Callable[..., dict]


@dataclass(frozen=True)
class Work:
    """What a worker needs to build the pipeline a job runs with."""

    model: str
    detector: str
    settings: Settings


# -- worker side --------------------------------------------------------------------------
# This process's pipelines, by (work, use_cache): a pool worker keeps those of its runs;
# a long-lived Dask worker keeps the last few.
_pipes: "OrderedDict[tuple[Work, bool], Any]" = OrderedDict()
_KEEP_PIPES = 4


def single_thread() -> None:
    """One thread per library in this process, set before the libraries start.

    N worker processes on N cores: each TensorFlow otherwise starts a pool of N threads
    and they fight over the cores (2 workers were slower than 1). onnxruntime (sface)
    reads OMP_NUM_THREADS; TensorFlow (mtcnn, DeepFace models) reads its own variables
    when it starts, so it is not imported for nothing."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"


def _worker_init(one_thread: bool = True) -> None:
    quiet_tensorflow()
    if one_thread:
        single_thread()


def _pipeline(work: Work, use_cache: bool):
    from facesearch.embedding.pipeline import Pipeline

    key = (work, use_cache)
    pipe = _pipes.get(key)
    if pipe is None:
        pipe = Pipeline(work.model, work.detector, work.settings, use_cache=use_cache)
        _pipes[key] = pipe
        while len(_pipes) > _KEEP_PIPES:
            _pipes.popitem(last=False)
    _pipes.move_to_end(key)
    return pipe


def _warm(work: Work) -> None:
    """Build ``work``'s pipeline and load its model in this worker ahead of its photos."""
    _pipeline(work, True).model.load()


def _task(job: Job, work: Work, path: str, args: tuple) -> dict:
    """One photo in a pool worker."""
    return job(_pipeline(work, True), path, None, *args)


def _dask_process(job: Job, work: Work, path: str, data: bytes | None, args: tuple) -> dict:
    """One photo on a Dask worker: its pipelines are built once per worker process and
    reused by every task it runs. The embedding cache is the client's folder, so a remote
    worker (``data`` given) neither reads nor writes it."""
    if not _pipes:
        _worker_init(True)
    return job(_pipeline(work, data is None), path, data, *args)


def _nothing() -> Iterator[dict]:
    yield from ()


# -- client side --------------------------------------------------------------------------
class PhotoWorkers:
    """Where jobs run (see the module docstring); a context manager that ends the worker
    processes (or the Dask client and cluster) it started."""

    def __init__(self, workers: int = 1, dask: str | None = None):
        self.workers = max(1, int(workers or 1))
        self.dask = dask
        self._pool: cf.ProcessPoolExecutor | None = None
        self._client = None
        self._cluster = None

    def __enter__(self) -> "PhotoWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    @property
    def in_process(self) -> bool:
        return not self.dask and self.workers == 1

    def run(self, job: Job, work: Work | None, paths: Iterable[str], *args: Any, pipe: Any = None) -> Iterator[dict]:
        """``job``'s result for each of ``paths``, in completion order. Closing the
        generator (a stop, an error) cancels what has not started. ``pipe``: this
        process's pipeline for ``work``, used when the photos are done here (else one is
        built)."""
        paths = list(paths)
        if not paths:
            return _nothing()  # nothing to start a cluster for (a generator: callers close it)
        if self.dask:
            return self._dask_results(job, work, paths, args)
        if self.workers == 1 or len(paths) < MIN_POOL:
            return self._local_results(job, work, paths, args, pipe)
        return self._pool_results(job, work, paths, args)

    def _local_results(self, job: Job, work: Work | None, paths: list[str], args: tuple,
                       pipe: Any = None) -> Iterator[dict]:
        from facesearch.embedding.pipeline import Pipeline

        quiet_tensorflow()
        if pipe is None:
            assert work is not None
            pipe = Pipeline(work.model, work.detector, work.settings)
        for p in paths:
            yield job(pipe, p, None, *args)

    def warm(self, work: Work) -> None:
        """Start the worker processes and load ``work``'s model in them now, without
        waiting: for a run that is about to come (they start while this process does
        something else). Nothing with Dask or one worker."""
        if self.dask or self.workers == 1:
            return
        pool = self._executor()
        for _ in range(self.workers):
            pool.submit(_warm, work)

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("spawn")  # TensorFlow is not fork-safe
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init,
                                                initargs=(True,))
        return self._pool

    def _pool_results(self, job: Job, work: Work, paths: list[str], args: tuple) -> Iterator[dict]:
        pool = self._executor()
        # A bounded window keeps memory flat on 200k-photo datasets.
        it = iter(paths)
        futs = {pool.submit(_task, job, work, p, args) for p in itertools.islice(it, self.workers * 8)}
        try:
            while futs:
                finished, futs = cf.wait(futs, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    yield f.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        futs.add(pool.submit(_task, job, work, nxt, args))
        finally:
            for f in futs:
                f.cancel()

    def _dask_client(self):
        """The client of ``self.dask``: a LocalCluster of ``workers`` processes (one thread
        each) or a running scheduler's."""
        if self._client is not None:
            return self._client
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--dask needs the dask and distributed packages (make install)") from None
        try:
            if self.dask == "local":
                self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
            else:
                self._client = Client(self.dask, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None
            raise ConfigError(f"cannot reach the Dask scheduler at {self.dask}: {exc}") from None
        return self._client

    def _dask_results(self, job: Job, work: Work, paths: list[str], args: tuple) -> Iterator[dict]:
        """Results from the Dask cluster; a remote one's workers get each photo's bytes
        rather than a path on this machine's disk. Face IDs are content hashes, so a
        photo done twice (a worker died) is still stored once."""
        from distributed import as_completed

        client = self._dask_client()
        remote = self._cluster is None
        work = Work(work.model, work.detector, work.settings.with_(admin_password=None))  # no use to workers
        n = max(1, len(client.scheduler_info().get("workers", {})))
        it = iter(paths)
        sent: set = set()  # submitted, not yet yielded

        def submit(p: str):
            data = None
            if remote:
                try:
                    data = Path(p).read_bytes()
                except OSError as exc:
                    return {"path": p, "error": f"cannot read file ({exc.strerror or exc})"}
            fut = client.submit(_dask_process, job, work, p, data, args, pure=False)
            sent.add(fut)
            return fut

        first = [submit(p) for p in itertools.islice(it, n * 8)]
        try:
            yield from (f for f in first if isinstance(f, dict))
            ac = as_completed([f for f in first if not isinstance(f, dict)])
            for f in ac:
                sent.discard(f)
                yield f.result()
                f.release()
                nxt = next(it, None)
                while nxt is not None:
                    sub = submit(nxt)
                    if isinstance(sub, dict):
                        yield sub
                        nxt = next(it, None)
                    else:
                        ac.add(sub)
                        break
        finally:
            # What has not run yet is not wanted (a stop, an error); the client may serve
            # another run.
            for f in sent:
                f.cancel()

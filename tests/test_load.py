"""Eight sessions at once: threads calling the Match page's core function
(``facesearch.search.identify.match``) on different photos, against one gallery, as eight
browser sessions of one dashboard process do. Every answer must be right.

The probes are detected and embedded in every search (``no_memory_cache``), eight at a
time through the shared models, then once more one by one. The gallery is the session's
and its photos may come from the session's embedding cache: it is what is searched, not
what is tested."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import DATA, celeba_split

pytestmark = pytest.mark.timeout(600)


def test_eight_concurrent_sessions_get_the_right_answers(settings, no_memory_cache):
    from facesearch.ingest.run import ingest
    from facesearch.search.identify import match

    gallery, probes = celeba_split(n_identities=8, n_gallery=3, n_probe=2)
    rep = ingest(DATA / "celeba", items=gallery, settings=settings)
    assert not rep.failed
    start = threading.Barrier(8)

    def session(i: int) -> list[tuple[str, str]]:
        start.wait()  # all eight at once, not one after another
        out = []
        for p in probes[i::8]:
            out.append((p.identity, _best(match(p.path.read_bytes(), p.path.name, settings=settings,
                                                require_face=False))))
        return out

    with ThreadPoolExecutor(8) as pool:
        answers = [a for res in pool.map(session, range(8)) for a in res]
    assert len(answers) == len(probes)
    right = sum(want == got for want, got in answers)
    # Each answer must be what the same search gives alone: run them again, one by one.
    alone = [(p.identity, _best(match(p.path.read_bytes(), p.path.name, settings=settings, require_face=False)))
             for p in probes]
    assert answers == [a for i in range(8) for a in alone[i::8]]
    with_face = [a for a in answers if a[1] is not None]
    assert len(with_face) >= len(probes) - 2 and right >= len(with_face) - 1, answers


def _best(result) -> str | None:
    return result.faces[0].best.identity if result.faces else None

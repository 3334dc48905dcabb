"""Threshold changes: previewed before they are saved, refused when the pairs they were
read off cannot tell their false match rate, kept in a history that restores them
(facesearch.search.thresholds, ``facesearch thresholds``, ``evaluate --apply``'s
confirmation).

Nothing here detects or embeds: the previews read the shipped impostor calibrations, and
the evidence of an evaluation is given as counts. The rates are checked against the
calibration files read and counted here, not through facesearch.search.calibration.
"""

from __future__ import annotations

import json
import math
import os
import pty
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from facesearch.access import ADMIN, VISITOR
from facesearch.errors import ConfigError, PermissionDeniedError, TooFewPairsError
from facesearch.settings import Settings
from facesearch.search import thresholds as T

CAL = ROOT / "facesearch" / "search" / "calibrations"


@pytest.fixture
def s(tmp_path):
    return Settings(home=tmp_path / "home")


def _calibration(model: str) -> dict:
    d = json.loads((CAL / f"{model}.json").read_text())
    d["tail"] = np.asarray(d["tail"])
    return d


def _audit(s: Settings) -> list[dict]:
    return [json.loads(line) for line in (s.home / "audit.jsonl").read_text().splitlines()]


def test_verify_preview_reads_both_rates_off_the_calibration(s):
    """The Evaluate page's click of the issue: sface from 0.637 to 0.814 on 1 of 50 pairs."""
    cal = _calibration("sface")
    tail, n = cal["tail"], cal["n_pairs"]
    p = T.preview_threshold("sface", 0.814, "Evaluate page: same-person, 100 pairs", s, evidence=(1, 50))
    assert (p.current, p.proposed) == (pytest.approx(0.637), 0.814)
    # 0.637 lies in the kept tail: count the pairs under it.
    assert p.rate_now == pytest.approx(np.sum(tail <= 0.637) / n, rel=1e-9)
    assert 0.0005 < p.rate_now < 0.002
    # 0.814 lies beyond it (more than 20,000 pairs): the grid of quantiles, every 0.1% of the pairs.
    assert np.sum(tail <= 0.814) == len(tail)
    grid = np.asarray(cal["grid"])
    assert p.rate_proposed == pytest.approx(np.mean(grid <= 0.814), abs=0.0015)
    assert 0.12 < p.rate_proposed < 0.16
    text = "\n".join(p.lines())
    assert "0.637 today, 0.814 proposed" in text and "1 of 50 different-person pairs" in text
    assert f"{100 * p.rate_proposed:.3g}% (about 1 in 7)" in text and "times as many" in text
    # 1 of 50 cannot tell 2% from 0.4% or 10%: refused, and saving it raises.
    assert "too few" in p.refusal and "1 of 50" in p.refusal
    with pytest.raises(TooFewPairsError, match="too few to know the false match rate at 0.814"):
        T.save(p, s)
    assert not s.thresholds_file.exists() and not (s.home / "audit.jsonl").exists()


def test_known_and_unknown_rates_follow_the_wilson_interval():
    z = 1.959963984540054
    for k, n in [(1, 50), (0, 1000), (4, 30), (12, 30), (16, 100), (300, 3000)]:
        p = k / n
        mid, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)
        assert T.rate_interval(k, n) == pytest.approx((lo, hi), abs=1e-9)
        assert (T.unknown_rate(k, n, 0.5) is None) == (hi - lo <= p), (k, n)
    # No false match at all only bounds the rate from above, however many pairs.
    assert T.unknown_rate(0, 100_000, 0.3) is not None
    assert T.unknown_rate(12, 30, 0.5) is None and T.unknown_rate(4, 30, 0.5) is not None
    assert "no different-person pair" in T.unknown_rate(0, 0, 0.5)


def test_search_preview_gives_the_share_of_strangers_at_the_gallerys_size(s):
    cal = _calibration("sface")
    tail, n_pairs = cal["tail"], cal["n_pairs"]
    size = 10

    def at_target(fpir):
        # The per-comparison rate a target asks for, the distance of that many pairs,
        # and the share of strangers a gallery of `size` faces then calls a match.
        k = math.floor(-math.expm1(math.log1p(-fpir) / size) * n_pairs)
        t = tail[k - 1]
        return t, 1 - (1 - np.sum(tail <= t) / n_pairs) ** size

    p = T.preview_target_fpir("sface", 0.05, size, "Evaluate page", s)
    assert (p.current, p.proposed, p.gallery_size) == (0.01, 0.05, size)
    (t_now, r_now), (t_new, r_new) = at_target(0.01), at_target(0.05)
    assert (p.match_now, p.match_proposed) == (pytest.approx(t_now), pytest.approx(t_new))
    assert (p.rate_now, p.rate_proposed) == (pytest.approx(r_now, rel=1e-6), pytest.approx(r_new, rel=1e-6))
    assert r_now == pytest.approx(0.01, rel=0.05) and r_new == pytest.approx(0.05, rel=0.05)
    text = "\n".join(p.lines())
    assert "In a gallery of 10 faces" in text and "(about 1 in 100)" in text and "(about 1 in 20)" in text
    assert p.refusal is None and not p.extrapolated
    # A larger gallery needs a smaller distance for the same share.
    assert T.preview_target_fpir("sface", 0.05, 100_000, "", s).match_proposed < t_new
    with pytest.raises(ConfigError, match="target FPIR"):
        T.preview_target_fpir("sface", 0.7, size, "", s)


def test_save_and_restore_round_trip_with_history_and_audit(s):
    default = T.verify_threshold("sface", s)
    T.save(T.preview_threshold("sface", 0.55, "first", s, evidence=(300, 3000)), s, actor=ADMIN)
    both = [T.preview_threshold("sface", 0.6, "second", s, evidence=(400, 3000)),
            T.preview_target_fpir("sface", 0.05, 100, "second", s)]
    T.save(both, s)  # the command line
    assert (T.verify_threshold("sface", s), T.target_fpir("sface", s)) == (0.6, 0.05)
    h = T.history("sface", s)
    assert [e["new"] for e in h] == [{"threshold": 0.55}, {"threshold": 0.6, "target_fpir": 0.05}]
    assert h[0]["was"] == {"threshold": pytest.approx(default)} and h[1]["was"]["threshold"] == 0.55
    assert "verify threshold 0.550 → 0.600; search target FPIR 1% → 5% (second)" in T.history_line(h[1])

    # A preview made before another save is stale: refused rather than undoing that save unseen.
    stale = T.preview_threshold("sface", 0.58, "stale", s, evidence=(350, 3000))
    T.save(T.preview_threshold("sface", 0.59, "third", s, evidence=(380, 3000)), s)
    with pytest.raises(ConfigError, match="changed to 0.59 since the preview"):
        T.save(stale, s)

    for want_thr, want_fpir, want_source in [(0.6, 0.05, "second"), (0.55, 0.01, "first"), (default, 0.01, "default")]:
        T.restore_previous("sface", s, actor=ADMIN)
        info = T.threshold_info("sface", s)
        assert (info["verify_threshold"], info["target_fpir"], info["source"]) == \
            (pytest.approx(want_thr), want_fpir, want_source)
    assert T.history("sface", s) == [] and "threshold" not in json.loads(s.thresholds_file.read_text())["sface"]
    with pytest.raises(ConfigError, match="no earlier threshold"):
        T.restore_previous("sface", s)

    got = [(e["setting"], e["value"], e["previous"], e.get("restored", False)) for e in _audit(s)]
    assert got == [("verify threshold", 0.55, pytest.approx(default), False),
                   ("verify threshold", 0.6, 0.55, False), ("search target FPIR", 0.05, 0.01, False),
                   ("verify threshold", 0.59, 0.6, False),
                   ("verify threshold", 0.6, 0.59, True),
                   ("verify threshold", 0.55, 0.6, True), ("search target FPIR", 0.01, 0.05, True),
                   ("verify threshold", pytest.approx(default), 0.55, True)]
    assert all(e["action"] == "threshold" and e["model"] == "sface" for e in _audit(s))
    assert _audit(s)[0]["actor"] == "admin"


def test_a_visitor_can_neither_save_nor_restore(tmp_path):
    s = Settings(home=tmp_path / "home", admin_password="s3cret")
    p = T.preview_threshold("sface", 0.55, "forged", s, evidence=(300, 3000))  # looking is fine
    with pytest.raises(PermissionDeniedError):
        T.save(p, s, actor=VISITOR)
    T.save(p, s, actor=ADMIN)
    with pytest.raises(PermissionDeniedError):
        T.restore_previous("sface", s, actor=VISITOR)
    assert T.verify_threshold("sface", s) == 0.55 and len(_audit(s)) == 1


# -- the command line -------------------------------------------------------------------

def _cli(*argv: str, stdin=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "facesearch.cli.main", *argv], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=120, stdin=stdin)


def test_thresholds_command_lists_and_restores(s):
    T.save(T.preview_threshold("dlib", 0.1, "evaluate lfw", s, evidence=(40, 300)), s)
    r = _cli("thresholds", "--home", str(s.home), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    dlib = next(i for i, line in enumerate(lines) if line.startswith("dlib "))
    assert "verify 0.1000" in lines[dlib] and "(evaluate lfw)" in lines[dlib]
    assert "verify threshold 0.085 → 0.100 (evaluate lfw)" in lines[dlib + 1]
    assert any(line.startswith("sface ") and "verify 0.6370" in line and "(default)" in line for line in lines)

    r = _cli("thresholds", "--home", str(s.home), "--restore", "dlib", stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "dlib: restored verify threshold 0.0850" in r.stdout
    assert T.verify_threshold("dlib", s) == pytest.approx(0.085) and T.history("dlib", s) == []
    assert _audit(s)[-1]["restored"] is True and _audit(s)[-1]["previous"] == 0.1
    # Nothing left to restore: one line on stderr, a non-zero exit.
    r = _cli("thresholds", "--home", str(s.home), "--restore", "dlib", stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stderr == "error: dlib has no earlier threshold to restore\n"
    r = _cli("thresholds", "--home", str(s.home), "--restore", "NoSuchNet", stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "NoSuchNet" in r.stderr


def test_apply_asks_on_a_terminal_and_refuses_without_one(s, capsys):
    """``evaluate --apply``'s last step, given previews of a rate the pairs can tell: an
    evaluation of the test data's size never gets that far (tests/test_evaluate.py)."""
    from facesearch.cli.evaluation import _confirm_save

    def previews():
        return [T.preview_threshold("sface", 0.55, "evaluate lfw", s, evidence=(300, 3000)),
                T.preview_target_fpir("sface", 0.05, 0, "evaluate lfw", s)]

    # pytest's stdin is no terminal: without --yes, shown and refused.
    with pytest.raises(ConfigError, match="--yes"):
        _confirm_save(previews(), False, s)
    assert "0.637 today, 0.550 proposed" in capsys.readouterr().out and not s.thresholds_file.exists()

    script = ("import sys; from pathlib import Path; from facesearch.cli.evaluation import _confirm_save; "
              "from facesearch.settings import Settings; from facesearch.search import thresholds as T; "
              "s = Settings(home=Path(sys.argv[1])); "
              "p = T.preview_threshold('sface', 0.55, 'evaluate lfw', s, evidence=(300, 3000)); "
              "sys.exit(0 if _confirm_save([p], False, s) else 1)")
    for answer, rc, saved, said in [(b"n\n", 1, 0.637, "not saved"), (b"y\n", 0, 0.55, "")]:
        main, child = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-c", script, str(s.home)], cwd=ROOT, stdin=child,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        os.close(child)
        os.write(main, answer)
        out, err = proc.communicate(timeout=120)
        os.close(main)
        assert proc.returncode == rc, err
        assert "Save? [y/N]" in out and "0.637 today, 0.550 proposed" in out
        assert T.verify_threshold("sface", s) == pytest.approx(saved) and said in err
    assert [e["value"] for e in _audit(s)] == [0.55]

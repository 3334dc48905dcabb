"""Admin sign-in throttling and lockout (issue 17, item 10a): exponential waits per
session and for the whole server, a lockout that survives a restart, and an audit log
that records every attempt without the password. The clock is injected: no test sleeps.
"""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT
from facesearch import signin
from facesearch.settings import Settings
from facesearch.signin import (GLOBAL_FREE, LOCKOUT_AFTER, WINDOW, SessionAttempts, SignInGuard, global_delay,
                               session_delay)

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def hosted(tmp_path):
    signin._process_failures.clear()  # a fresh process
    return Settings(home=tmp_path / "home", admin_password=PASSWORD)


def test_waits_double():
    assert [session_delay(n) for n in range(6)] == [0, 0, 1, 2, 4, 8]
    assert global_delay(GLOBAL_FREE) == 0 and global_delay(GLOBAL_FREE + 1) == 1
    assert global_delay(GLOBAL_FREE + 4) == 8
    assert session_delay(100) == signin.MAX_DELAY


def test_a_session_is_slowed_down_exponentially(hosted):
    clock = Clock()
    guard, me = SignInGuard(hosted, clock), SessionAttempts()
    first = guard.attempt(me, "guess1")
    assert not first.ok and first.checked and first.wait == 0  # one typo is free
    second = guard.attempt(me, "guess2")
    assert not second.ok and second.checked and second.wait == 1
    # Too early: refused without comparing, even the right password.
    early = guard.attempt(me, PASSWORD)
    assert not early.ok and not early.checked and early.wait == pytest.approx(1)
    assert "Too many wrong passwords" in early.message
    clock.t += 1
    third = guard.attempt(me, "guess3")
    assert third.checked and third.wait == 2
    clock.t += 1.5
    assert not guard.attempt(me, PASSWORD).checked
    clock.t += 0.5
    ok = guard.attempt(me, PASSWORD)
    assert ok.ok and me.failures == 0


def test_many_sessions_are_slowed_down_together_then_locked_out(hosted):
    clock = Clock()
    guard = SignInGuard(hosted, clock)
    # Each guess from a fresh session (the attacker opens a new one each time).
    waits = []
    for i in range(LOCKOUT_AFTER):
        r = guard.attempt(SessionAttempts(), f"guess{i}")
        assert r.checked, (i, r)
        waits.append(r.wait)
        if i + 1 < LOCKOUT_AFTER:
            fresh_wait, locked, _ = guard.status(SessionAttempts())
            assert fresh_wait == pytest.approx(global_delay(i + 1)) and not locked
            clock.t += fresh_wait
    assert waits[:GLOBAL_FREE] == [0] * GLOBAL_FREE
    assert waits[GLOBAL_FREE:GLOBAL_FREE + 3] == [1, 2, 4]
    # Locked for everyone, the right password included, and a restart does not reset it.
    signin._process_failures.clear()
    again = SignInGuard(hosted, clock)
    r = again.attempt(SessionAttempts(), PASSWORD)
    assert not r.ok and r.locked and not r.checked and "locked" in r.message
    assert (hosted.home / "signin.json").stat().st_mode & 0o777 == 0o600
    # Once the window has passed, sign-in works again.
    clock.t += WINDOW + 1
    assert again.attempt(SessionAttempts(), PASSWORD).ok


def test_attempts_are_audited_without_the_password(hosted):
    from facesearch.audit import audit_path, read_audit

    clock = Clock()
    guard, me = SignInGuard(hosted, clock), SessionAttempts()
    guard.attempt(me, "hunter2-wrong")
    guard.attempt(me, "hunter3-wrong")
    guard.attempt(me, PASSWORD)  # too early
    clock.t += 5
    guard.attempt(me, PASSWORD)
    lines = read_audit(hosted)[::-1]
    assert [(e["action"], e["outcome"]) for e in lines] == [("sign-in", "wrong password")] * 2 + [
        ("sign-in", "too early"), ("sign-in", "signed in")]
    assert {e["session"] for e in lines} == {me.session}
    raw = audit_path(hosted).read_text()
    for secret in ("hunter2-wrong", "hunter3-wrong", PASSWORD):
        assert secret not in raw


def test_the_page_says_wait(monkeypatch, tmp_path, session_home):
    """The Home page's sign-in box (AppTest): after two wrong passwords the next
    attempt, even the right one, is refused with the wait."""
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    signin._process_failures.clear()
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    monkeypatch.setenv("FACESEARCH_ADMIN_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    for guess in ("one", "two"):
        at.text_input(key="admin_password_input").set_value(guess)
        at.button(key="admin_sign_in").click().run()
        assert any("Wrong password" in e.value for e in at.error)
    at.text_input(key="admin_password_input").set_value(PASSWORD)
    at.button(key="admin_sign_in").click().run()
    assert not at.exception
    assert any("Too many wrong passwords" in e.value for e in at.error)
    assert "admin_sign_out" not in {b.key for b in at.button}

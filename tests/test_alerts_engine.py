"""The alert engine with an injected clock: which messages each change sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.engine import AlertEngine, AlertSettings
from alerts.render import AlertMessage
from store.models import Change, Record, Snapshot, Status, Update
from store.rules import apply_update

START = datetime(2025, 1, 15, 14, 0, tzinfo=UTC)
MAIN = "C0MAIN00001"
ARCS = "C0ARCS00001"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Sent:
    op: str  # post, reply or update
    target: str  # channel for a post, parent id for a reply, message id otherwise
    message_id: str
    message: AlertMessage


@dataclass
class RecordingOutbox:
    sent: list[Sent] = field(default_factory=list)

    def post(self, channel: str, message_id: str, message: AlertMessage) -> None:
        self.sent.append(Sent("post", channel, message_id, message))

    def reply(self, parent_id: str, message_id: str, message: AlertMessage) -> None:
        self.sent.append(Sent("reply", parent_id, message_id, message))

    def update(self, message_id: str, message: AlertMessage) -> None:
        self.sent.append(Sent("update", message_id, message_id, message))

    def ops(self, op: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.op == op]


class Router:
    def channel_of(self, app: str) -> tuple[str, str]:
        return ("arcs", ARCS) if app == "ARCS" else ("main", MAIN)

    def admin_channel(self) -> str:
        return MAIN

    def link(self, board: str) -> str | None:
        return f"https://acme.slack.test/docs/T0EPMTEAM1/F{board.upper()}"


class Harness:
    """An engine fed through the real ordering rules, as the store feeds it."""

    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        self.outbox = RecordingOutbox()
        values: dict[str, Any] = {
            "alert_on": frozenset({Status.ERROR, Status.WARNING}),
            "tz": ZoneInfo("America/New_York"),
            "bundle_seconds": 5.0,
            "max_bundle_seconds": 60.0,
            "flap_threshold": 5,
            "flap_window_seconds": 3600.0,
        }
        values.update(settings)
        self.settings = AlertSettings(**values)
        self.engine = self.new_engine()
        self.engine.load({})
        self.records: dict[tuple[str, str], Record] = {}
        self.saves = 0

    def new_engine(self) -> AlertEngine:
        engine = AlertEngine(self.settings, Router(), self.outbox, clock=self.clock)
        engine.on_change = self._saved
        return engine

    def _saved(self) -> None:
        self.saves += 1

    def send(
        self,
        app: str,
        domain: str,
        status: Status,
        job_id: str | None = None,
        message: str | None = None,
        *,
        notify: bool = True,
    ) -> Record:
        update = Update(
            app=app,
            domain=domain,
            status=status,
            received_at=self.clock.now,
            timestamp=self.clock.now,
            job_id=job_id,
            message=message,
        )
        change, _ = apply_update(self.records.get((app, domain)), update)
        assert change.after is not None
        self.records[(app, domain)] = change.after
        if notify:
            self.engine.on_changes(Snapshot(), [change])
        return change.after

    def snapshot(self) -> Snapshot:
        return Snapshot(dict(self.records))

    def settle(self) -> None:
        """Let every bundle become due and post it."""
        self.clock.advance(self.settings.max_bundle_seconds)
        self.engine.tick()


@pytest.fixture
def harness() -> Harness:
    return Harness()


def all_text(message: AlertMessage) -> str:
    return message.text + repr(message.blocks)


# --- first alert ---------------------------------------------------------------


def test_failure_posts_after_bundle_window(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42", "Load failed")
    harness.clock.advance(4.9)
    harness.engine.tick()
    assert harness.outbox.sent == []

    harness.clock.advance(0.1)
    harness.engine.tick()

    posts = harness.outbox.ops("post")
    assert len(posts) == 1
    assert posts[0].target == MAIN


def test_alert_contains_required_facts(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42", "Load failed")
    harness.settle()

    text = all_text(harness.outbox.sent[0].message)
    assert "Planning · Actual" in text
    assert "EPM job failed" in text
    assert "job 42" in text
    assert "Load failed" in text
    assert "09:00 EST" in text
    assert "https://acme.slack.test/docs/T0EPMTEAM1/FMAIN" in text


def test_fallback_text_carries_the_facts(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42", "Load failed")
    harness.settle()

    text = harness.outbox.sent[0].message.text
    assert "Planning · Actual" in text
    assert "job 42" in text
    assert "Load failed" in text


def test_outside_text_is_escaped(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "<@U1>", "<!channel> & more")
    harness.settle()

    text = all_text(harness.outbox.sent[0].message)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp; more" in text
    assert "<@U1>" not in text


def test_warning_alerts_by_default(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.WARNING, "42")
    harness.settle()

    assert "finished with warnings" in harness.outbox.sent[0].message.text


def test_warning_is_quiet_when_not_in_alert_on() -> None:
    harness = Harness(alert_on=frozenset({Status.ERROR}))
    harness.send("Planning", "Actual", Status.WARNING, "42")
    harness.settle()

    assert harness.outbox.sent == []


def test_arcs_row_alerts_in_its_channel(harness: Harness) -> None:
    harness.send("ARCS", "Reconcile", Status.ERROR)
    harness.settle()

    assert harness.outbox.sent[0].target == ARCS


def test_zero_bundle_posts_at_once() -> None:
    harness = Harness(bundle_seconds=0.0)
    harness.send("Planning", "Actual", Status.ERROR)

    assert len(harness.outbox.ops("post")) == 1


def test_running_and_ok_send_nothing(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.LOADING, "42")
    harness.send("Planning", "Actual", Status.OK, "42")
    harness.settle()

    assert harness.outbox.sent == []


def test_on_changes_says_whether_alert_state_changed(harness: Harness) -> None:
    # The alerts component wakes its loop only when this returns True.
    now = harness.clock.now
    loading = Update("Planning", "Actual", Status.LOADING, now, now, "42")
    error = Update("Planning", "Actual", Status.ERROR, now, now, "42")
    started, _ = apply_update(None, loading)
    failed, _ = apply_update(started.after, error)

    assert harness.engine.on_changes(Snapshot(), [started]) is False
    assert harness.engine.on_changes(Snapshot(), [failed]) is True


# --- later updates and recovery ------------------------------------------------


def test_updates_edit_parent_and_reply_in_thread(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42", "first")
    harness.settle()
    parent = harness.outbox.sent[0].message_id

    harness.send("Planning", "Actual", Status.LOADING, "42", "retrying")
    harness.send("Planning", "Actual", Status.ERROR, "42", "second")

    assert len(harness.outbox.ops("post")) == 1
    replies = harness.outbox.ops("reply")
    updates = harness.outbox.ops("update")
    assert [reply.target for reply in replies] == [parent, parent]
    assert "Error → Loading" in replies[0].message.text
    assert "Loading → Error" in replies[1].message.text
    assert [update.target for update in updates] == [parent, parent]
    assert "second" in updates[-1].message.text


def test_recovery_replies_and_updates_parent(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.LOADING, "42")
    harness.clock.advance(90)
    harness.send("Planning", "Actual", Status.ERROR, "42")
    harness.settle()
    parent = harness.outbox.sent[0].message_id

    harness.send("Planning", "Actual", Status.OK, "42")

    reply = harness.outbox.ops("reply")[-1]
    update = harness.outbox.ops("update")[-1]
    assert reply.target == parent
    assert "recovered" in reply.message.text
    assert update.target == parent
    assert update.message.text.startswith(":white_check_mark: Recovered")


def test_recovery_by_new_job_is_a_recovery(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42")
    harness.settle()

    harness.send("Planning", "Actual", Status.LOADING, "43")
    harness.send("Planning", "Actual", Status.OK, "43")

    replies = harness.outbox.ops("reply")
    assert len(replies) == 2
    assert "recovered" in replies[-1].message.text
    assert len(harness.outbox.ops("post")) == 1


def test_no_recovery_message_without_alert() -> None:
    harness = Harness(alert_on=frozenset({Status.ERROR}))
    harness.send("Planning", "Actual", Status.WARNING, "42")
    harness.send("Planning", "Actual", Status.OK, "42")
    harness.settle()

    assert harness.outbox.sent == []


def test_after_recovery_next_failure_is_new_alert(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR)
    harness.settle()
    harness.send("Planning", "Actual", Status.OK)

    harness.send("Planning", "Actual", Status.ERROR)
    harness.settle()

    posts = harness.outbox.ops("post")
    assert len(posts) == 2
    assert posts[0].message_id != posts[1].message_id


def test_new_failing_run_gets_own_alert(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42")
    harness.settle()
    first = harness.outbox.sent[0].message_id

    harness.send("Planning", "Actual", Status.ERROR, "43")
    harness.settle()

    posts = harness.outbox.ops("post")
    replies = harness.outbox.ops("reply")
    assert len(posts) == 2
    assert replies[-1].target == first
    assert "has its own alert" in replies[-1].message.text


def test_retry_under_new_job_failing_gets_own_alert(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42")
    harness.settle()
    first = harness.outbox.sent[0].message_id

    harness.send("Planning", "Actual", Status.LOADING, "43")
    harness.send("Planning", "Actual", Status.ERROR, "43")
    harness.settle()

    posts = harness.outbox.ops("post")
    replies = [reply for reply in harness.outbox.ops("reply") if reply.target == first]
    assert len(posts) == 2
    assert "Error → Loading" in replies[0].message.text
    assert "has its own alert" in replies[1].message.text


def test_updates_before_posting_follow_parent(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42", "first")
    harness.clock.advance(1)
    harness.send("Planning", "Actual", Status.LOADING, "42", "retrying")
    harness.settle()

    ops = [sent.op for sent in harness.outbox.sent]
    assert ops == ["post", "reply"]
    assert "Loading" in harness.outbox.sent[0].message.text


# --- bundling --------------------------------------------------------------------


def test_failures_within_window_share_one_parent(harness: Harness) -> None:
    for domain in ("Actual", "Budget", "Forecast"):
        harness.send("Planning", domain, Status.ERROR)
        harness.clock.advance(2)
    harness.settle()

    posts = harness.outbox.ops("post")
    assert len(posts) == 1
    text = all_text(posts[0].message)
    for domain in ("Actual", "Budget", "Forecast"):
        assert f"Planning · {domain}" in text
    assert "3 EPM jobs need attention" in posts[0].message.text


def test_failure_after_quiet_window_is_new_parent(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR)
    harness.clock.advance(5)
    harness.engine.tick()
    harness.send("Planning", "Budget", Status.ERROR)
    harness.settle()

    assert len(harness.outbox.ops("post")) == 2


def test_bundle_posts_after_max_wait(harness: Harness) -> None:
    for index in range(20):
        harness.send("Planning", f"D{index}", Status.ERROR)
        harness.clock.advance(4)
        harness.engine.tick()
    harness.settle()

    # Failures 4 s apart keep the bundle open until its 60 s maximum.
    posts = harness.outbox.ops("post")
    assert len(posts) == 2
    assert "15 EPM jobs" in posts[0].message.text
    assert "5 EPM jobs" in posts[1].message.text


def test_bundles_are_per_channel(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR)
    harness.send("ARCS", "Reconcile", Status.ERROR)
    harness.settle()

    assert sorted(post.target for post in harness.outbox.ops("post")) == [ARCS, MAIN]


def test_bundled_row_update_edits_bundle_parent(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR)
    harness.send("Planning", "Budget", Status.ERROR)
    harness.settle()
    parent = harness.outbox.sent[0].message_id

    harness.send("Planning", "Budget", Status.OK)

    assert harness.outbox.ops("reply")[0].target == parent
    update = harness.outbox.ops("update")[0]
    assert update.target == parent
    assert "1 EPM job needs attention (1 recovered or moved on)" in update.message.text


def test_bundle_closes_when_all_rows_recover(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR)
    harness.send("Planning", "Budget", Status.ERROR)
    harness.settle()

    harness.send("Planning", "Actual", Status.OK)
    harness.send("Planning", "Budget", Status.OK)

    assert "Closed" in harness.outbox.ops("update")[-1].message.text
    assert harness.engine.state.groups == {}


# --- flapping --------------------------------------------------------------------


def flip(harness: Harness, times: int) -> None:
    for index in range(times):
        status = Status.ERROR if index % 2 == 0 else Status.OK
        harness.send("Planning", "Actual", status)
        harness.clock.advance(60)
        harness.engine.tick()


def test_flapping_sends_one_notice_then_quiet() -> None:
    harness = Harness(flap_threshold=2, bundle_seconds=0.0)
    flip(harness, 4)  # Error, OK, Error, OK: the third flip passes 2
    notices = [p for p in harness.outbox.ops("post") if "Flapping" in p.message.text]
    before = len(harness.outbox.sent)

    flip(harness, 6)

    assert len(notices) == 1
    assert len(harness.outbox.sent) == before


def test_flapping_state_stays_small() -> None:
    harness = Harness(flap_threshold=2, bundle_seconds=0.0)
    flip(harness, 50)

    rows = list(harness.engine.state.rows.values())

    assert len(rows) == 1
    assert len(rows[0].flips) <= 3


def test_flapping_closes_open_alert() -> None:
    harness = Harness(flap_threshold=2, bundle_seconds=0.0)
    flip(harness, 4)

    replies = harness.outbox.ops("reply")
    assert "is flapping" in replies[-1].message.text


def test_flapping_ends_after_stable_window() -> None:
    harness = Harness(flap_threshold=2, bundle_seconds=0.0, flap_window_seconds=600)
    flip(harness, 4)
    notice = next(p for p in harness.outbox.ops("post") if "Flapping" in p.message.text)

    harness.clock.advance(599 - 60)
    harness.engine.tick()
    assert harness.outbox.sent[-1].target != notice.message_id

    harness.clock.advance(241)
    harness.engine.tick()
    reply = harness.outbox.ops("reply")[-1]
    update = harness.outbox.ops("update")[-1]
    assert reply.target == notice.message_id
    assert "alerts resume" in reply.message.text
    assert update.target == notice.message_id
    assert "No longer flapping" in update.message.text


def test_alerts_resume_after_flapping() -> None:
    harness = Harness(flap_threshold=2, bundle_seconds=0.0, flap_window_seconds=600)
    flip(harness, 4)
    harness.clock.advance(3600)
    harness.engine.tick()
    posts_before = len(harness.outbox.ops("post"))

    harness.send("Planning", "Actual", Status.ERROR, "99")

    assert len(harness.outbox.ops("post")) == posts_before + 1


def test_slow_flips_are_not_flapping() -> None:
    harness = Harness(flap_threshold=2, bundle_seconds=0.0, flap_window_seconds=600)
    for index in range(6):
        status = Status.ERROR if index % 2 == 0 else Status.OK
        harness.send("Planning", "Actual", status)
        harness.clock.advance(400)

    assert not any("Flapping" in p.message.text for p in harness.outbox.ops("post"))


# --- stuck -----------------------------------------------------------------------


def test_stuck_posts_once_per_run(harness: Harness) -> None:
    record = harness.send("Planning", "Actual", Status.LOADING, "42")
    harness.clock.advance(7300)

    harness.engine.on_stuck(record, 7200)
    harness.engine.on_stuck(record, 7200)
    harness.settle()

    posts = harness.outbox.ops("post")
    assert len(posts) == 1
    assert "EPM job stuck" in posts[0].message.text
    assert "max runtime 2h" in all_text(posts[0].message)


def test_update_after_stuck_replies_in_thread(harness: Harness) -> None:
    record = harness.send("Planning", "Actual", Status.LOADING, "42")
    harness.engine.on_stuck(record, 60)
    harness.settle()
    parent = harness.outbox.sent[0].message_id

    harness.send("Planning", "Actual", Status.OK, "42")

    reply = harness.outbox.ops("reply")[-1]
    assert reply.target == parent
    assert "recovered" in reply.message.text


def test_stuck_retry_of_alerted_run_replies(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR)
    harness.settle()
    parent = harness.outbox.sent[0].message_id
    record = harness.send("Planning", "Actual", Status.LOADING)

    harness.engine.on_stuck(record, 60)

    reply = harness.outbox.ops("reply")[-1]
    assert len(harness.outbox.ops("post")) == 1
    assert reply.target == parent
    assert "is stuck" in reply.message.text


def test_stuck_ignores_row_no_longer_loading(harness: Harness) -> None:
    record = harness.send("Planning", "Actual", Status.OK)

    harness.engine.on_stuck(record, 60)
    harness.settle()

    assert harness.outbox.sent == []


# --- admin -----------------------------------------------------------------------


def test_admin_alert_posts_once_until_cleared(harness: Harness) -> None:
    harness.engine.raise_admin("canvas:main", "Canvas fails. Fix: check the token.")
    harness.engine.raise_admin("canvas:main", "Canvas fails. Fix: check the token.")

    posts = harness.outbox.ops("post")
    assert len(posts) == 1
    assert posts[0].target == MAIN
    assert "check the token" in posts[0].message.text


def test_admin_clear_replies_and_updates(harness: Harness) -> None:
    harness.engine.raise_admin("canvas:main", "Canvas fails.")
    parent = harness.outbox.sent[0].message_id
    harness.clock.advance(60)

    harness.engine.clear_admin("canvas:main")
    harness.engine.clear_admin("canvas:main")

    assert [sent.op for sent in harness.outbox.sent] == ["post", "reply", "update"]
    assert harness.outbox.sent[1].target == parent
    assert "Resolved" in harness.outbox.sent[2].message.text


def test_admin_alert_after_clear_posts_again(harness: Harness) -> None:
    harness.engine.raise_admin("alert_queue", "Queue stuck.")
    harness.engine.clear_admin("alert_queue")

    harness.engine.raise_admin("alert_queue", "Queue stuck.")

    assert len(harness.outbox.ops("post")) == 2


# --- restart ---------------------------------------------------------------------


def test_thread_continues_after_restart(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42")
    harness.settle()
    parent = harness.outbox.sent[0].message_id
    saved = harness.engine.to_json()

    harness.engine = harness.new_engine()
    harness.engine.load(saved)
    harness.engine.reconcile(harness.snapshot())
    harness.send("Planning", "Actual", Status.OK, "42")

    assert len(harness.outbox.ops("post")) == 1
    assert harness.outbox.ops("reply")[-1].target == parent


def test_restart_handles_unhandled_change(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.OK, "41")
    saved = harness.engine.to_json()
    # Stored, but the process died before the engine saw it.
    harness.send("Planning", "Actual", Status.ERROR, "42", notify=False)

    harness.engine = harness.new_engine()
    harness.engine.load(saved)
    harness.engine.reconcile(harness.snapshot())
    harness.settle()

    assert len(harness.outbox.ops("post")) == 1


def test_restart_does_not_repeat_handled_change(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.ERROR, "42")
    harness.settle()
    saved = harness.engine.to_json()

    harness.engine = harness.new_engine()
    harness.engine.load(saved)
    harness.engine.reconcile(harness.snapshot())
    harness.settle()

    assert len(harness.outbox.sent) == 1


def test_first_start_does_not_announce_old_failures() -> None:
    harness = Harness()
    harness.send("Planning", "Actual", Status.ERROR, notify=False)
    harness.engine = harness.new_engine()

    harness.engine.load(None)
    harness.engine.reconcile(harness.snapshot())
    harness.settle()

    assert harness.outbox.sent == []


def test_seen_only_change_is_not_saved(harness: Harness) -> None:
    harness.send("Planning", "Actual", Status.LOADING, "42")
    saves = harness.saves

    harness.send("Planning", "Actual", Status.LOADING, "42", "50 % done")

    assert harness.saves == saves


def test_change_list_skips_unchanged(harness: Harness) -> None:
    record = harness.send("Planning", "Actual", Status.ERROR, notify=False)
    update = Update("Planning", "Actual", Status.ERROR, START, START)

    harness.engine.on_changes(Snapshot(), [Change(update, record, record, False)])
    harness.settle()

    assert harness.outbox.sent == []

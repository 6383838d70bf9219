"""The feedback page end to end: the real app under uvicorn, driven in headless Chromium.

The rating a person clicks is the rating stored: every test clicks (or types) on the page,
then reads the service's database and compares row by row. Skipped where Debian's
chromium or the playwright package is missing (``playwright install`` cannot download
browsers here; CI installs the ``chromium`` package).
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)

from sqlalchemy import select  # noqa: E402 (after the skips: nothing to import without a browser)
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from taskloop.serve.records import PredictionRecord  # noqa: E402

# The first QA answer loads the sentence encoder, and the CPU is shared: be patient.
TIMEOUT_MS = 30_000
sync_api.expect.set_options(timeout=TIMEOUT_MS)

RATER = "rater"
PASSWORD = "correct horse battery staple"
CONTEXT = "Vienna lies on the Danube, in the east of Austria. Graz lies on the Mur."


@dataclass
class Live:
    """The running service: its URL, its database, and an API token for seeding."""

    url: str
    sessions: sessionmaker[Session]
    token: str = ""

    def ask_qa(self, question: str, context: str = CONTEXT) -> dict[str, Any]:
        """POST /v1/tasks/qa as the rater; the service's answer."""
        resp = httpx.post(
            f"{self.url}/v1/tasks/qa",
            json={"question": question, "context": context},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )
        assert resp.status_code == 200, resp.text
        answer: dict[str, Any] = resp.json()
        return answer

    def feedback(self, prediction_id: str) -> list[dict[str, Any]]:
        """Every stored rating that names ``prediction_id`` (as A or B), oldest first."""
        from taskloop.serve.storage.tables import FeedbackRow

        with self.sessions() as s:
            rows = s.scalars(
                select(FeedbackRow)
                .where(
                    (FeedbackRow.prediction_id == prediction_id)
                    | (FeedbackRow.other_prediction_id == prediction_id)
                )
                .order_by(FeedbackRow.id)
            ).all()
            return [
                {
                    "id": r.id,
                    "prediction_id": r.prediction_id,
                    "kind": r.kind,
                    "thumbs": r.thumbs,
                    "score": r.score,
                    "comment": r.comment,
                    "other_prediction_id": r.other_prediction_id,
                    "preferred": r.preferred,
                    "rater": r.rater,
                }
                for r in rows
            ]

    def prediction(self, prediction_id: str) -> PredictionRecord:
        from taskloop.serve.storage import repo

        with self.sessions() as s:
            return repo.get_prediction(s, prediction_id)


def _add_user(sessions: sessionmaker[Session], name: str, scopes: list[str]) -> None:
    from taskloop.serve.auth import hash_secret
    from taskloop.serve.storage import repo, session_scope

    with session_scope(sessions) as s:
        repo.create_user(s, name, hash_secret(PASSWORD), scopes)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The real app (SQLite in a tmp folder) served by uvicorn on a free loopback port."""
    import uvicorn

    from taskloop.serve.app import create_app
    from taskloop.serve.settings import ServeSettings

    tmp = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASKLOOP_HOME", str(tmp / "home"))
        settings = ServeSettings(
            database_url=f"sqlite:///{tmp / 'serve.db'}",
            jwt_secret="test-secret-" + "0123456789abcdef" * 3,
        )
        app = create_app(settings, warm_up=False)
        _add_user(app.state.sessions, RATER, ["tasks:run", "feedback:write"])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting (see the log above)"
            assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        try:
            resp = httpx.post(
                f"{url}/v1/auth/token",
                data={"grant_type": "password", "username": RATER, "password": PASSWORD,
                      "scope": "tasks:run feedback:write"},
            )  # fmt: skip
            assert resp.status_code == 200, resp.text
            yield Live(url=url, sessions=app.state.sessions, token=resp.json()["access_token"])
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    """A fresh page (its own sessionStorage) that fails the test on a script error or a
    Content-Security-Policy violation (the page must run under default-src 'self')."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield tab
    context.close()
    assert problems == []


def expect(locator: Any) -> Any:
    return sync_api.expect(locator)


def sign_in(page: Any, live: Live, username: str = RATER, password: str = PASSWORD) -> None:
    page.goto(f"{live.url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text(f"Signed in as {username}")


def saved_ids(page: Any) -> list[int]:
    """The rating ids the success message names ("Saved rating #7", "… #7 and #8")."""
    notice = page.locator("#notice")
    expect(notice).to_have_text(re.compile(r"^Saved ratings? #\d+"))
    return [int(n) for n in re.findall(r"#(\d+)", notice.inner_text())]


def queue_item(page: Any, text: str) -> Any:
    return page.locator(".queue-item", has_text=text)


def test_page_is_served_at_root_under_the_strict_csp(live: Live) -> None:
    """GET / redirects to the page; the page and its assets come with default-src 'self'."""
    resp = httpx.get(f"{live.url}/", follow_redirects=True)
    assert resp.status_code == 200
    assert str(resp.url).endswith("/ui/")
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    for asset in ("app.js", "style.css"):
        assert httpx.get(f"{live.url}/ui/{asset}").status_code == 200


def test_clicked_stars_thumbs_and_comment_are_stored(page: Any, live: Live) -> None:
    """4 stars + thumbs down + a comment, clicked with the mouse, are two stored ratings
    (one per kind, the comment on the first): thumbs "down" with the comment, score 4."""
    question = f"Which river flows through Vienna? [{uuid.uuid4().hex[:8]}]"
    answer = live.ask_qa(question)
    sign_in(page, live)
    queue_item(page, question).click()
    panel = page.locator("#rate-panel")
    expect(panel.locator("pre.answer")).to_have_text(answer["output"])

    panel.get_by_role("radio", name="4 stars").click()
    panel.get_by_role("button", name="Thumbs down").click()
    expect(panel.get_by_role("button", name="Thumbs down")).to_have_attribute(
        "aria-pressed", "true"
    )
    panel.get_by_label("Comment (optional)").fill("Right river, but say <which> one & why")
    panel.get_by_role("button", name="Save rating").click()

    ids = saved_ids(page)
    stored = live.feedback(answer["prediction_id"])
    assert [r["id"] for r in stored] == ids
    pid = answer["prediction_id"]
    assert stored == [
        {"id": ids[0], "prediction_id": pid, "kind": "thumbs", "thumbs": "down", "score": None,
         "comment": "Right river, but say <which> one & why", "other_prediction_id": None,
         "preferred": None, "rater": RATER},
        {"id": ids[1], "prediction_id": pid, "kind": "score", "thumbs": None, "score": 4,
         "comment": None, "other_prediction_id": None, "preferred": None, "rater": RATER},
    ]  # fmt: skip
    expect(queue_item(page, question)).to_contain_text("rated")


def test_pair_choice_b_is_stored_with_both_ids(page: Any, live: Live) -> None:
    """Two answers to one input, queued for labelling: the item comes first, marked; A and B
    show side by side; choosing "B is better" stores a preference whose other_prediction_id
    is the answer shown under B."""
    from taskloop.serve.storage import repo, session_scope

    question = f"Which river flows through Graz? [{uuid.uuid4().hex[:8]}]"
    first = live.ask_qa(question)
    stored_first = live.prediction(first["prediction_id"])
    second = stored_first.model_copy(
        update={"id": uuid.uuid4().hex, "output": "the Rhine (a second model's answer)"}
    )
    with session_scope(live.sessions) as s:
        repo.add_prediction(s, second)
        repo.add_queue_item(
            s, task="qa", input=stored_first.input, priority=1.0,
            reason="two answers disagree", prediction_id=first["prediction_id"],
        )  # fmt: skip

    sign_in(page, live)
    item = queue_item(page, question).filter(has_text="A vs B")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("needs a label")
    expect(page.locator(".queue-item").first).to_contain_text("needs a label")
    item.click()

    panel = page.locator("#rate-panel")
    shown_a = panel.get_by_role("region", name="Answer A").locator("pre").inner_text()
    shown_b = panel.get_by_role("region", name="Answer B").locator("pre").inner_text()
    assert {shown_a, shown_b} == {first["output"], second.output}
    panel.get_by_role("radio", name="B is better").click()
    panel.get_by_label("Comment (optional)").fill("B names the river")
    panel.get_by_role("button", name="Save choice").click()

    [rating_id] = saved_ids(page)
    [stored] = live.feedback(first["prediction_id"])
    outputs = {first["prediction_id"]: first["output"], second.id: second.output}
    assert stored["id"] == rating_id
    assert stored["kind"] == "preference"
    assert stored["preferred"] == "b"
    assert stored["comment"] == "B names the river"
    assert {stored["prediction_id"], stored["other_prediction_id"]} == set(outputs)
    assert outputs[stored["prediction_id"]] == shown_a
    assert outputs[stored["other_prediction_id"]] == shown_b


def _tab_to(page: Any, predicate: str, limit: int = 60) -> None:
    """Press Tab until the JS ``predicate`` (of ``el``, the focused element) holds."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const el = document.activeElement; return {predicate}; }})()"):
            return
    raise AssertionError(f"Tab never reached an element where {predicate}")


def test_keyboard_only_two_stars(page: Any, live: Live) -> None:
    """Keyboard only: sign in, Tab to the answer, Enter, Tab to the stars (focus lands on
    "1 star", unchecked), ArrowRight checks "2 stars", Enter saves: one rating, score 2."""
    question = f"Where is Vienna? [{uuid.uuid4().hex[:8]}]"
    answer = live.ask_qa(question)
    page.goto(f"{live.url}/ui/")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(RATER)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(queue_item(page, question)).to_be_visible()

    _tab_to(page, f"el.classList.contains('queue-item') && el.textContent.includes({question!r})")
    # Focus is visible: the focused control draws an outline.
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    _tab_to(page, "el.type === 'radio'")
    focused = page.evaluate(
        "[document.activeElement.getAttribute('aria-label'), document.activeElement.checked]"
    )
    assert focused == ["1 star", False]
    page.keyboard.press("ArrowRight")
    star_2 = page.locator("#rate-panel").get_by_role("radio", name="2 stars")
    expect(star_2).to_be_focused()
    expect(star_2).to_be_checked()
    page.keyboard.press("Enter")

    [rating_id] = saved_ids(page)
    assert live.feedback(answer["prediction_id"]) == [
        {"id": rating_id, "prediction_id": answer["prediction_id"], "kind": "score",
         "thumbs": None, "score": 2, "comment": None, "other_prediction_id": None,
         "preferred": None, "rater": RATER},
    ]  # fmt: skip


def test_shortcut_keys_rate_like_the_buttons(page: Any, live: Live) -> None:
    """The documented shortcuts: "+" presses thumbs up, "5" checks 5 stars, then Save."""
    question = f"What lies on the Mur? [{uuid.uuid4().hex[:8]}]"
    answer = live.ask_qa(question)
    sign_in(page, live)
    queue_item(page, question).click()
    page.keyboard.press("+")
    page.keyboard.press("5")
    panel = page.locator("#rate-panel")
    expect(panel.get_by_role("button", name="Thumbs up")).to_have_attribute("aria-pressed", "true")
    expect(panel.get_by_role("radio", name="5 stars")).to_be_checked()
    panel.get_by_role("button", name="Save rating").click()
    saved_ids(page)
    stored = live.feedback(answer["prediction_id"])
    assert [(r["kind"], r["thumbs"], r["score"]) for r in stored] == [
        ("thumbs", "up", None),
        ("score", None, 5),
    ]


def test_ask_shows_checks_and_the_rating_is_stored_with_input_escaped(
    page: Any, live: Live
) -> None:
    """The Ask view runs a QA row typed in the form, shows status and every check as
    stored, and rates the answer; markup typed as input comes back as text, not as DOM."""
    question = '<img src="x" id="injected"> Which river flows through Vienna?'
    sign_in(page, live)
    page.get_by_role("button", name="Ask").click()
    page.get_by_label("Question", exact=True).fill(question)
    page.get_by_label("Context").fill(CONTEXT)
    page.get_by_role("button", name="Get answer").click()

    result = page.locator("#ask-result")
    expect(result.locator(".status")).to_be_visible()
    result.get_by_role("button", name="Thumbs up").click()
    result.get_by_role("button", name="Save rating").click()
    [rating_id] = saved_ids(page)

    from taskloop.serve.storage.tables import FeedbackRow

    with live.sessions() as s:
        row = s.get(FeedbackRow, rating_id)
        assert row is not None
        prediction_id = row.prediction_id
        assert (row.kind, row.thumbs) == ("thumbs", "up")
    stored = live.prediction(prediction_id)
    assert stored.input == {"question": question, "context": CONTEXT}
    expect(result.locator(".status")).to_have_text(stored.status)
    expect(result.locator("pre.answer")).to_have_text(stored.output or "")
    rows = result.locator("table.checks tbody tr")
    expect(rows).to_have_count(len(stored.checks))
    for i, check in enumerate(stored.checks):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(check["name"])
        expect(cells.nth(1)).to_have_text("✓ passed" if check["passed"] else "✗ failed")

    page.get_by_role("button", name="Rate", exact=True).click()
    expect(queue_item(page, "Which river flows through Vienna?").first).to_be_visible()
    expect(page.get_by_text(question).first).to_be_visible()
    assert page.locator("#injected").count() == 0


def test_wrong_password_shows_the_error_and_stays_signed_out(page: Any, live: Live) -> None:
    sign_in_form = page.locator("#signin")
    page.goto(f"{live.url}/")
    page.get_by_label("Username").fill(RATER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed: wrong username or password")
    expect(sign_in_form).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    expect(page.get_by_label("Password")).to_be_focused()


def test_a_session_that_ends_goes_back_to_sign_in(page: Any, live: Live) -> None:
    """A user removed while signed in: the next call answers 401, the page says why and
    shows the sign-in form again."""
    from taskloop.serve.storage import repo, session_scope

    name = f"leaver-{uuid.uuid4().hex[:6]}"
    _add_user(live.sessions, name, ["feedback:write"])
    sign_in(page, live, username=name)
    expect(page.get_by_role("button", name="Ask")).to_be_hidden()  # no tasks:run
    with session_scope(live.sessions) as s:
        repo.delete_user(s, name)
    page.get_by_role("button", name="Refresh").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Your session has ended")
    expect(alert).to_contain_text("Sign in again")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()

"""Security (issue 15): what a hostile visitor of a public Space controls, and what they cannot reach.

SECURITY.md names, endpoint by endpoint, the test that shows each threat is met; the tests here
are the ones issue 15 added (tests/test_reliability.py holds the earlier ones it also names).
The app is the real server, launched in this process and driven by gradio_client and raw HTTP;
the Hub is tests/hubserver.py's recording FakeHub on 127.0.0.1, which logs every request with its headers.

The Space's own credentials are marked tokens: OWNER_TOKEN in HF_TOKEN (as a Space owner sets it
to read private models), SAVED_TOKEN in the machine's saved login file. A visitor's push must use
their own token and never either of these.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

import app
from helpers import plain_image, refusal
from hubserver import FakeHub, point_client_at
from n2n import hub
from ui import common, push, registry

OWNER_TOKEN = "hf_SpaceOwnerEnvToken0SECRET0000000000"
SAVED_TOKEN = "hf_MachineSavedLogin0SECRET1111111111"
VISITOR_TOKEN = "hf_VisitorTypedToken0SECRET2222222222"
OAUTH_TOKEN = "hf_oauth_VisitorLogin0SECRET333333333"
SECRETS = (OWNER_TOKEN, SAVED_TOKEN, VISITOR_TOKEN, OAUTH_TOKEN)


# ----------------------------------------------------------------------------- the app, its visitors, the Hub

@pytest.fixture(scope="module")
def visitor(server, photo_folder):
    """One visitor (one session) and the model they fine-tuned there (one step)."""
    client = Client(server[1], verbose=False)
    files = [handle_file(str(p)) for p in sorted(photo_folder.glob("*.png"))[:2]]
    *_, status, _, name = client.submit(files, "gaussian", steps=1, api_name="/finetune").result(timeout=300)
    assert "finished" in status and name.startswith("finetuned-gaussian-")
    yield client, name
    client.close()


@pytest.fixture(scope="module")
def stranger(server):
    """Another visitor: a session of their own, who knows the first visitor's model name."""
    client = Client(server[1], verbose=False)
    yield client
    client.close()


class EchoingHub(FakeHub):
    """A Hub that refuses every token and quotes the Authorization header back in its error."""

    def _handler(self):
        base = super()._handler()

        class Handler(base):
            def _send(self, status, content, headers=None):
                if status == 401:
                    said = f"Invalid credentials in Authorization header: {self.headers.get('Authorization')}"
                    content = json.dumps({"error": said}).encode()
                    headers = {**(headers or {}), "X-Error-Message": said}
                super()._send(status, content, headers)

        return Handler


def space_hub(monkeypatch, tmp_path, hub_class=FakeHub) -> FakeHub:
    """A recording Hub where the Space's credentials are set as on a Space: HF_TOKEN and a saved login."""
    from huggingface_hub import constants

    fake = hub_class()
    fake.valid_tokens = set(SECRETS) if hub_class is FakeHub else set()  # the owner's tokens work: the harm is real
    point_client_at(monkeypatch, fake.url, tmp_path / "hf" / "hub")
    monkeypatch.setenv("HF_TOKEN", OWNER_TOKEN)
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text(SAVED_TOKEN)
    return fake


@pytest.fixture
def fake(monkeypatch, tmp_path):
    server = space_hub(monkeypatch, tmp_path)
    yield server
    server.close()


def sent(fake: FakeHub) -> str:
    """Everything the Hub was sent (paths, headers, bodies), as one text to search."""
    return "\n".join(f"{r['method']} {r['path']}?{r['query']} {r['headers']} {r['body']!r}" for r in fake.log)


# ----------------------------------------------------------------------------- /denoise: the Hub box


def test_a_visitors_hub_repo_is_fetched_without_the_space_credentials(visitor, fake, tiny_checkpoint, tmp_path):
    """The Space's HF_TOKEN (and saved login) must not open private or gated repos to visitors:
    a reference typed in the Hub box is fetched anonymously, and still served."""
    client, _ = visitor
    fake.commit("someone/public-n2n",
                {n: (tiny_checkpoint / n).read_bytes() for n in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)})
    noisy = plain_image(tmp_path)
    *_, download, source = client.predict(handle_file(str(noisy)), "gaussian", "someone/public-n2n",
                                          api_name="/denoise")
    assert Path(download).is_file() and "someone/public-n2n" in source
    assert fake.requests("GET", "someone/public-n2n")
    assert not any("authorization" in r["headers"] for r in fake.log)
    assert not any(secret in sent(fake) for secret in SECRETS)


# ----------------------------------------------------------------------------- /push: credentials


@pytest.mark.parametrize("credential", ["HF_TOKEN", "saved login"])
def test_push_without_a_token_is_refused_and_never_uses_the_space_credentials(visitor, fake, monkeypatch, credential):
    """The issue's report: the token box left empty pushed with the owner's HF_TOKEN (or saved login)."""
    from huggingface_hub import constants

    client, name = visitor
    if credential == "saved login":
        monkeypatch.delenv("HF_TOKEN")
    else:
        Path(constants.HF_TOKEN_PATH).unlink()
    for typed in ("", "   "):
        message = refusal(lambda: client.predict(name, "visitor/n2n-mine", typed, True, api_name="/push"))
        assert re.search(r"access token", message) and message.count(". ") == 0, message  # one sentence
    assert fake.log == [] and fake.created == [] and fake.repos == {}  # not a single request reached the Hub


def test_push_sends_the_visitor_token_and_nothing_else(visitor, fake):
    client, name = visitor
    message, box = client.predict(name, "visitor/n2n-mine", f" {VISITOR_TOKEN} ", True, api_name="/push")
    assert message.startswith(f"Pushed `{name}` to [visitor/n2n-mine]") and box == ""
    assert fake.created == [{"name": "n2n-mine", "organization": "visitor", "visibility": "private", "type": "model"}]
    files = fake.repos["visitor/n2n-mine"]["commits"][fake.repos["visitor/n2n-mine"]["refs"]["main"]]
    folder = registry.FINETUNED[name]
    assert {f: files[f] for f in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)} == {
        f: (folder / f).read_bytes() for f in (hub.CONFIG_NAME, hub.WEIGHTS_NAME)}
    writes = [r for r in fake.log if r["method"] == "POST"]
    assert writes and all(r["headers"].get("authorization") == f"Bearer {VISITOR_TOKEN}" for r in writes)
    assert all(r["headers"].get("authorization") in (None, f"Bearer {VISITOR_TOKEN}") for r in fake.log)
    assert OWNER_TOKEN not in sent(fake) and SAVED_TOKEN not in sent(fake)


def test_a_failing_push_never_shows_the_token(server, visitor, monkeypatch, tmp_path, capfd, caplog):
    """A Hub that refuses the token and quotes it back: the token is in none of the logs, the
    error, the queue's event stream, the session's saved page (deep link), nor the page itself."""
    import logging

    caplog.set_level(logging.INFO)  # every INFO line (at DEBUG, httpcore prints response headers verbatim: SECURITY.md)
    _, url = server
    client, name = visitor
    fake = space_hub(monkeypatch, tmp_path, EchoingHub)
    try:
        message = refusal(lambda: client.predict(name, "visitor/n2n-mine", VISITOR_TOKEN, True, api_name="/push"))
        assert message.startswith("Push to visitor/n2n-mine failed") and "401" in message, message
        # pasted with a line break inside: no header can carry it (and httpx quotes the header in its error)
        for pasted in (f"{VISITOR_TOKEN}\nhf_x", f"{VISITOR_TOKEN} x", f"{VISITOR_TOKEN}é"):
            message += " " + refusal(lambda: client.predict(name, "visitor/n2n-mine", pasted, True, api_name="/push"))
        # the raw queue event stream, in the visitor's own session (what a browser reads)
        body = {"data": [name, "visitor/n2n-mine", VISITOR_TOKEN, True], "session_hash": client.session_hash}
        event = httpx.post(url + "gradio_api/call/push", json=body, timeout=30).json()["event_id"]
        stream = httpx.get(url + f"gradio_api/call/push/{event}", timeout=60).text
        assert "event: error" in stream and "failed" in stream, stream
        # the session's saved page state, which "Share via Link" hands to anyone with the link
        link = httpx.get(url + "gradio_api/deep_link", params={"session_hash": client.session_hash}, timeout=30)
        shared = httpx.get(url, params={"deep_link": link.json()}, timeout=30).text
        page = httpx.get(url, timeout=30).text + httpx.get(url + "config", timeout=30).text
    finally:
        fake.close()
    assert link.json() and "Push to the Hugging Face Hub" in page
    assert f"Bearer {VISITOR_TOKEN}" in sent(fake), "the push did reach the Hub"
    out, err = capfd.readouterr()
    for where, text in {"error": message, "event stream": stream, "shared page": shared, "page": page,
                        "stdout": out, "stderr": err, "log": caplog.text}.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:12]}… in the {where}"


def test_the_login_token_is_used_when_the_box_is_empty(visitor, fake):
    """On a Space with hf_oauth, gradio injects the visitor's login as gr.OAuthToken (its session
    cookie, signed by the Space, cannot be made here): the handler is called as gradio calls it."""
    import gradio as gr

    from gradio.utils import oauth_token_requirement

    assert oauth_token_requirement(push.push_to_hub) == "optional"  # gradio injects the login, or None
    client, name = visitor
    login = gr.OAuthToken(token=OAUTH_TOKEN, scope="openid profile write-repos manage-repos",
                          expires_at=int(time.time()) + 3600)
    session = gr.Request(session_hash=client.session_hash)
    *_, (message, box) = push.push_to_hub(name, "visitor/n2n-login", "", True, login, session)
    assert message.startswith(f"Pushed `{name}`") and box == ""
    assert fake.created and all(r["headers"].get("authorization") == f"Bearer {OAUTH_TOKEN}" for r in fake.log)
    # a typed token is the visitor's explicit choice: it wins over the login
    fake.log.clear()
    *_, (message, _) = push.push_to_hub(name, "visitor/n2n-login", VISITOR_TOKEN, True, login, session)
    assert {r["headers"].get("authorization") for r in fake.log} == {f"Bearer {VISITOR_TOKEN}"}
    # and without a login or a token, nothing
    with pytest.raises(gr.Error, match="access token"):
        list(push.push_to_hub(name, "visitor/n2n-login", "", True, None, session))
    # locally there is no "Sign in" button: gradio's local stand-in for it signs in with the machine's own login
    assert not any(isinstance(block, gr.LoginButton) for block in app.demo.blocks.values())


def test_sign_in_is_offered_on_a_space_with_hf_oauth(monkeypatch):
    """The Space's own settings (hf_oauth: true sets these two) and gradio[oauth] from requirements.txt
    are what "Sign in with Hugging Face" needs; without the Space's settings it is never offered."""
    monkeypatch.delenv("SPACE_ID", raising=False)  # the test may itself run on a Space
    assert not push.oauth_enabled()
    monkeypatch.setenv("SPACE_ID", "n2n/studio")
    monkeypatch.setenv("OAUTH_CLIENT_ID", "0123-client")
    assert push.oauth_enabled()  # fails when gradio[oauth]'s authlib or itsdangerous is missing


# ----------------------------------------------------------------------------- another visitor's session


def test_another_session_cannot_push_denoise_with_or_start_from_my_model(visitor, stranger, fake, tmp_path,
                                                                          photo_folder):
    """Model names show in the page and are short: knowing one must not be enough."""
    client, name = visitor
    image = handle_file(str(plain_image(tmp_path)))
    message = refusal(lambda: stranger.predict(name, "stranger/stolen", VISITOR_TOKEN, True, api_name="/push"))
    assert message.startswith("No model fine-tuned in this session"), message
    assert fake.log == []
    for model, compare in ((name, []), ("tiny", [name])):
        message = refusal(lambda: stranger.predict(image, model, "", compare, api_name="/denoise"))
        assert (message.startswith(f"Unknown model {name!r}")
                or (compare and "not in the list of choices" in message)), message
    photo = handle_file(str(next(photo_folder.glob("*.png"))))
    message = refusal(lambda: stranger.predict([photo], "gaussian", steps=1, init=name, api_name="/finetune"))
    assert message.startswith(f"Unknown model {name!r}"), message
    # its own session still can
    *_, source = client.predict(image, name, api_name="/denoise")
    assert "fine-tuned in this session" in source


def test_another_session_cannot_stop_my_run(server, stranger, photo_folder):
    owner = Client(server[1], verbose=False)
    try:
        job = owner.submit([handle_file(str(next(photo_folder.glob("*.png"))))], "gaussian", steps=common.MAX_STEPS,
                           api_name="/finetune")

        def steps() -> int:
            return max([p["step"] for update in job.outputs() for p in plot_points(update[0])] or [0])

        deadline = time.monotonic() + 180
        while steps() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        stranger.predict(api_name="/stop")
        stopped_at = steps()
        while steps() < stopped_at + 3 and time.monotonic() < deadline and not job.done():
            time.sleep(0.2)
        assert not job.done() and steps() >= stopped_at + 3, "another visitor's /stop stopped this run"
        owner.predict(api_name="/stop")
        *_, status, _, _ = job.result(timeout=120)
        assert "stopped" in status and steps() < common.MAX_STEPS
    finally:
        owner.close()


def plot_points(plot) -> list[dict]:
    """The rows of a LinePlot value as the client receives it (step 0: the app's empty anchors)."""
    if not plot:
        return []
    plot = plot.get("value", plot) if isinstance(plot, dict) else plot
    return [row for row in (dict(zip(plot["columns"], r)) for r in plot["data"]) if row["step"] > 0]


def test_files_of_another_session_are_not_served(server, visitor):
    """The checkpoint and zip of a run sit under the system temp dir: none is served by path. (The uploads
    are decoded in memory, never copied there.)"""
    _, url = server
    _, name = visitor
    run = registry.FINETUNED[name].parent  # WORK/runs/<random>/
    files = [registry.FINETUNED[name] / hub.WEIGHTS_NAME, registry.FINETUNED[name] / hub.CONFIG_NAME,
             run / f"{name}.zip"]
    assert all(f.is_file() for f in files)
    assert not any(p.suffix == ".png" and not p.name.startswith("preview_") for p in run.rglob("*")), \
        "an upload was copied into the run's folder"
    for path in files:
        for link in (f"gradio_api/file={path}",
                     f"gradio_api/file={common.WORK}/../{path.relative_to(common.WORK.parent)}"):
            assert httpx.get(url + link, timeout=30).status_code in (403, 404), link


# ----------------------------------------------------------------------------- path-like inputs, sizes


def test_path_like_inputs_reach_no_server_file(server, visitor, canary, tmp_path):
    """Every text input that could name a file, and every file input given a server path, is refused
    without opening anything there (/denoise's model and Hub boxes: test_reliability)."""
    _, url = server
    client, name = visitor
    folder, opened = canary
    photo = handle_file(str(plain_image(tmp_path)))
    config = str(folder / hub.CONFIG_NAME)
    for init in (str(folder), "../" * 8 + str(folder).lstrip("/"), f"file://{folder}", "./tiny", "n2n/..", ".."):
        message = refusal(lambda: client.predict([photo], "gaussian", steps=1, init=init, api_name="/finetune"))
        assert message.startswith("Cannot start from") or message.startswith("Unknown model"), message
    for pushed in (str(folder), config):
        message = refusal(lambda: client.predict(pushed, "visitor/x", VISITOR_TOKEN, True, api_name="/push"))
        assert message.startswith("No model fine-tuned in this session"), message
    for repo in ("../x", "visitor/..", "/etc/passwd", "visitor/x/../../y", "visitor/x@main", "visitor/x:sub",
                 "visitor"):
        message = refusal(lambda: client.predict(name, repo, VISITOR_TOKEN, True, api_name="/push"))
        assert message == "Give the Hub repo as owner/name.", message
    server_file = {"path": config, "meta": {"_type": "gradio.FileData"}}  # a file never uploaded
    for api, data in (("corrupt", [server_file, "gaussian", 25, 0]),
                      ("finetune", [[server_file], "gaussian", "synthetic", None, *common.API_DEFAULT_RANGE, "auto", 1,
                                    "scratch", False, 0])):
        event = httpx.post(url + f"gradio_api/call/{api}", json={"data": data}, timeout=30).json()["event_id"]
        answer = httpx.get(url + f"gradio_api/call/{api}/{event}", timeout=60).text
        assert "event: error" in answer and "event: complete" not in answer, (api, answer)
    assert opened == [], "an input reached these files"


def test_finetune_budget_is_bounded(visitor, photo_folder, tmp_path, monkeypatch):
    """Steps, uploads and pixels per run have ceilings (pixels per image: test_reliability's bomb.png)."""
    client, _ = visitor
    photo = handle_file(str(next(photo_folder.glob("*.png"))))
    for mode in ("synthetic", "zero-shot"):
        for steps in (common.MAX_STEPS + 1, 10**9, 0):
            message = refusal(lambda: client.predict([photo], "gaussian", mode, steps=steps, api_name="/finetune"))
            assert re.search(r"(?i)steps|maximum|minimum", message), message
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    from n2n.io import write_image
    import numpy as np

    many = [handle_file(str(write_image(tiny / f"{k:03d}.png", np.full((8, 8, 3), k, np.uint8))))
            for k in range(common.MAX_UPLOADS + 1)]
    message = refusal(lambda: client.predict(many, "gaussian", steps=1, api_name="/finetune"))
    assert message.startswith(f"Too many images: {common.MAX_UPLOADS + 1} files"), message
    # two of the photos, less one pixel (where it is read)
    monkeypatch.setattr("ui.finetune.MAX_TRAIN_PIXELS", 2 * 72 * 96 - 1)
    photos = [handle_file(str(p)) for p in sorted(photo_folder.glob("*.png"))[:2]]
    message = refusal(lambda: client.predict(photos, "gaussian", steps=1, api_name="/finetune"))
    assert message.startswith("The images hold over"), message

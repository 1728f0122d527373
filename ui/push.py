"""Push a model fine-tuned in this session to the Hugging Face Hub, with the visitor's credentials only.

Endpoint /push (model name, repo id, token, private). The typed token, else the visitor's Hugging Face
login (gr.OAuthToken, on a Space with hf_oauth); never the server's HF_TOKEN or saved login (SECURITY.md).
"""
from __future__ import annotations

import os
import re

import gradio as gr

from n2n import hub
from n2n.io import reason
from ui.common import UserError
from ui.registry import FINETUNED, is_hub_ref, owns

TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # a Hub access token: printable ASCII, no spaces


def oauth_enabled() -> bool:
    """Whether "Sign in with Hugging Face" works here: on a Space with `hf_oauth: true` and gradio[oauth].

    Elsewhere gradio's stand-in for it signs every visitor in with the machine's own login: never shown.
    """
    from importlib.util import find_spec

    return bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID")
                and find_spec("authlib") and find_spec("itsdangerous"))


def push_to_hub(name, repo_id, token="", private=True, oauth_token: gr.OAuthToken | None = None,
                request: gr.Request = None):
    """Push a model fine-tuned in this session with the visitor's own credentials: the token typed, else
    their Hugging Face login; never the server's HF_TOKEN or saved login. Yields (message, token box).

    The token box is emptied at once: gradio keeps a session's inputs for "Share via Link" pages.
    """
    yield "", ""
    repo_id = (repo_id or "").strip()
    if not name or not owns(name, request):
        raise UserError("No model fine-tuned in this session to push: run a fine-tuning first.")
    if not is_hub_ref(repo_id) or "@" in repo_id or ":" in repo_id:
        raise UserError("Give the Hub repo as owner/name.")
    token = (token or "").strip() or (oauth_token.token if oauth_token else "")
    if not token:
        raise UserError("Enter your Hugging Face access token (write)"
                        + (" or sign in with Hugging Face" if oauth_enabled() else "")
                        + " to push: this app never pushes with its own credentials.")
    if not TOKEN_CHARS.fullmatch(token):  # httpx would quote the whole header, token and all, in its error
        raise UserError("That access token holds characters no token has (spaces, line breaks, accents): "
                        "copy it again from your Hugging Face settings.")
    folder = FINETUNED[name]
    try:
        hub.write_model_card(folder)
        url = hub.push(folder, repo_id, token=token, private=bool(private))  # explicit: no fallback to HF_TOKEN
    except Exception as e:  # the token and the server's folder scrubbed from whatever the Hub or the client said
        why = reason(e).replace(token, "***").replace(str(folder), name)[:300]
        raise UserError(f"Push to {repo_id} failed: {why}") from None
    yield f"Pushed `{name}` to [{repo_id}]({url}).", ""


def build(model_name: gr.Textbox) -> None:
    """The push accordion and its event, inside the caller's layout; pushes the model named in `model_name`."""
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        gr.Markdown("Pushes go to your account, with your token"
                    + (" or your Hugging Face login" if oauth_enabled() else "")
                    + ": this app never uses its own credentials, and keeps no token.")
        if oauth_enabled():
            gr.LoginButton()
        with gr.Row():
            repo_box = gr.Textbox("", label="Repo id", placeholder="your-name/n2n-my-camera")
            token_box = gr.Textbox("", label="Your access token (write)", type="password")
        private_cb = gr.Checkbox(value=True, label="Private repo")
        push_btn = gr.Button("Push")
        push_md = gr.Markdown(label="Push result")
    push_btn.click(push_to_hub, [model_name, repo_box, token_box, private_cb], [push_md, token_box], api_name="push",
                   api_visibility="undocumented", show_progress_on=push_md)

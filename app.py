"""n2n: Noise2Noise Studio, the Gradio app: the tabs of ui/ in one Blocks, launched.

Each tab is a module of ui/ that builds its components and wires its events (corrupt, denoise with
batch, finetune with push, learn, about); ui/common.py and ui/registry.py hold what they share. The `n2n`
package corrupts, denoises, trains and loads the models. Importing this file builds the
interface and downloads nothing; models load on first use and stay cached.

    python app.py [--share] [--host 0.0.0.0] [--port 7860] [--no-mcp]

Endpoints for gradio_client: /corrupt, /denoise, /denoise_batch, /finetune (their first two inputs are the image
and the noise or model name; the rest have defaults), /stop, /push, /adapt, /learn, /estimate. The same app
is an MCP server (on unless --no-mcp or GRADIO_MCP_SERVER=False): corrupt_image, denoise_image and
estimate_image are its tools, at /gradio_api/mcp/ (streamable HTTP) and /gradio_api/mcp/sse. A model fine-tuned here
belongs to the session that made it; a push uses the visitor's own token or Hugging Face login,
never the server's (SECURITY.md).
"""
from __future__ import annotations

import argparse
import os

import gradio as gr

from ui import about, batch, corrupt, denoise, finetune, learn, registry
from ui.common import KEEP_S, MAX_FILE_SIZE

TITLE = "n2n: Noise2Noise Studio"
INTRO = f"""# {TITLE}
Learn to remove noise **without ever seeing a clean image** (Lehtinen et al., *Noise2Noise*, ICML 2018).
Corrupt a photo, denoise it with the pretrained models, or fine-tune one on your own images."""
CSS = """
#status {min-height: 2.5em}
footer {display: none !important}
"""
# Gradio keeps each visitor session's state (about 250 kB here, measured) for up to this many sessions, oldest
# dropped first: 10,000 by default, 2.5 GB on a 16 GB Space (issue 14's soak: RSS climbing with new sessions).
# N2N_SESSIONS lowers it (the soak uses that to reach the cap within its run)


def sessions_kept(value: str | None) -> int:
    """The visitor sessions whose state is kept: N2N_SESSIONS's `value`, 1 to 1,000; 1,000 when unset."""
    if value is None or value.strip() == "":
        return 1000
    try:
        n = int(value)
    except ValueError:
        raise SystemExit(f"error: N2N_SESSIONS={value!r}: give a whole number of sessions, 1 to 1000") from None
    if n < 1:
        raise SystemExit(f"error: N2N_SESSIONS={value!r}: the app needs at least 1 session")
    return min(n, 1000)


def mcp_wanted(value: str | None) -> bool:
    """Whether to serve the MCP tools, from GRADIO_MCP_SERVER's `value` ("true" or "false", any case); on when
    unset (Gradio's own default is off)."""
    if value is None or value.strip() == "":
        return True
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SystemExit(f"error: GRADIO_MCP_SERVER={value!r}: give True or False (or leave it unset: on)")


SESSIONS_KEPT = sessions_kept(os.environ.get("N2N_SESSIONS"))
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "css": CSS, "theme": gr.themes.Soft(),
                 "state_session_capacity": SESSIONS_KEPT, "mcp_server": mcp_wanted(os.environ.get("GRADIO_MCP_SERVER"))}


def build_demo(extra_models=None) -> gr.Blocks:
    """The app. `extra_models`: checkpoint folders to list beside the bundled ones
    (a dict name -> folder, or folders); N2N_EXTRA_MODELS adds more."""
    registry.register_extra(registry.extra_from_env())
    if extra_models:
        registry.register_extra(extra_models)
    # Gradio's copies of uploads and results: every hour (or sooner), those older than 3 h (or N2N_KEEP_S) go
    keep_s = min(3 * 3600, KEEP_S)
    with gr.Blocks(title=TITLE, delete_cache=(int(min(3600, keep_s / 3)), int(keep_s))) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            with gr.Tab("Corrupt", id="corrupt"):
                corrupted = corrupt.build()
            with gr.Tab("Denoise", id="denoise"):
                denoiser = denoise.build(corrupted, tabs)
                batch.build(denoiser.model, denoiser.hub_repo, denoiser.stride, denoiser.ensemble)
            with gr.Tab("Fine-tune", id="finetune"):
                finetune.build(demo, denoiser, tabs)
            with gr.Tab("Learn", id="learn"):
                learn.build()
            with gr.Tab("About", id="about"):
                about.build()
    demo.queue(default_concurrency_limit=2, max_size=32)
    return demo


demo = build_demo()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--concurrency", type=int, default=2, help="calls served at once (fine-tuning: always one)")
    parser.add_argument("--queue-size", type=int, default=32, help="calls that may wait in the queue")
    parser.add_argument("--no-mcp", action="store_true",
                        help="do not serve the MCP tools (as GRADIO_MCP_SERVER=False does)")
    args = parser.parse_args()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    demo.launch(share=args.share, server_name=args.host, server_port=args.port,
                **LAUNCH_KWARGS | ({"mcp_server": False} if args.no_mcp else {}))

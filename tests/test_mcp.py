"""The app as an MCP server (issue 26): its tools listed with their descriptions, denoise and estimate called
through the MCP endpoint itself with the `mcp` client, and the app launched with MCP off serving none of it.

The app is the suite's own `server` fixture (tests/conftest.py), launched with app.LAUNCH_KWARGS: MCP on.
"""
from __future__ import annotations

import ast
import asyncio
import base64
import io
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from gradio_client import Client
from gradio_client.exceptions import AppError
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

import app
from helpers import ROOT, photo
from n2n import hub
from n2n.metrics import psnr

TOOLS = {"corrupt_image", "denoise_image", "estimate_image"}
# public endpoints that gradio_client calls with keyword arguments and defaults: Gradio lists every public endpoint
# as an MCP tool, and its one way to hide one ("undocumented") takes those from gradio_client
ALSO_TOOLS = {"finetune", "adapt_image", "learn", "independence_check", "denoise_batch"}


def test_the_tools_are_listed_with_their_descriptions_and_the_plumbing_is_not(server):
    _, url = server
    response = httpx.get(url + "gradio_api/mcp/schema", timeout=30)
    assert response.status_code == 200
    tools = {tool["name"]: tool for tool in response.json()}
    # not stop_run, push_to_hub (a token, and a model of the caller's session) nor the UI's private events
    assert set(tools) == TOOLS | ALSO_TOOLS
    for name, tool in tools.items():
        assert len(tool["description"]) > 100, name
        properties = tool["inputSchema"]["properties"]
        assert all(p["description"] for p in properties.values()), (name, properties)  # every Args: line read
    for name in TOOLS:
        assert tools[name]["inputSchema"]["properties"]["image"]["format"].startswith("Gradio File Input")
        assert "Returns:" in tools[name]["description"], name
    denoise = tools["denoise_image"]
    assert "PSNR" in denoise["description"]
    properties = denoise["inputSchema"]["properties"]
    assert {"model", "stride", "ensemble"} <= set(properties)
    assert "gaussian" in properties["model"]["enum"] and properties["stride"]["enum"] == ["auto", "1", "2", "3", "4"]
    assert "rotations" in properties["ensemble"]["description"]
    assert {"kind", "sigma", "param"} <= set(tools["estimate_image"]["description"].replace(",", " ").split())
    # hidden from MCP and the API page, still served to gradio_client, given all their inputs
    client = Client(url, verbose=False)
    try:
        assert client.predict(api_name="/stop") == ()
        with pytest.raises(AppError, match="No model fine-tuned in this session to push"):
            client.predict("finetuned-x", "visitor/x", "hf_" + "x" * 34, True, api_name="/push")
    finally:
        client.close()


def data_url(image: np.ndarray) -> str:
    """`image` (uint8 HxWxC) as a PNG in a data: URL, as an MCP client may send a file."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def call_tools(url: str, calls: list[tuple[str, dict, bool]]) -> tuple[list, list[str]]:
    """Each (tool, arguments, with_progress) of `calls` called in one MCP session over streamable HTTP: their
    results, and the progress messages the server sent to the calls that asked for them."""
    progress = []

    async def on_progress(step, total, message):
        progress.append(message)

    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = {tool.name for tool in (await session.list_tools()).tools}
            assert listed == TOOLS | ALSO_TOOLS
            results = [await session.call_tool(name, arguments, progress_callback=on_progress if ask else None)
                       for name, arguments, ask in calls]
    return results, progress


def png_at(url: str) -> np.ndarray:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(response.content)))


@pytest.mark.skipif("gaussian" not in hub.bundled_names(), reason="the bundled gaussian checkpoint is not trained yet")
def test_denoise_and_estimate_through_the_mcp_endpoint(server):
    _, url = server
    clean = np.rint(photo(64) * 255).astype(np.uint8)  # a real photo, 64 × 64 RGB
    noisy = np.clip(np.rint(clean + np.random.default_rng(0).normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    image = data_url(noisy)
    (plain, options, estimate), progress = asyncio.run(call_tools(url + "gradio_api/mcp/", [
        ("denoise_image", {"image": image, "model": "gaussian"}, False),
        ("denoise_image", {"image": image, "model": "gaussian", "stride": "2", "ensemble": True}, True),
        ("estimate_image", {"image": image}, False)]))
    assert not any(result.isError for result in (plain, options, estimate))

    # Called without a progress token (as most assistants call), Gradio 6.31 answers a tool of several outputs
    # with one text, the outputs' list as Python writes it; the download is the 4th, a file served by URL
    (content,) = plain.content
    slider, gallery, table, download, source = ast.literal_eval(content.text)
    denoised = png_at(download["url"])
    assert denoised.shape == noisy.shape and denoised.dtype == np.uint8
    gain = psnr(clean, denoised) - psnr(clean, noisy)
    assert gain > 3, f"denoised through MCP, the bundled gaussian model gained only {gain:.2f} dB at σ = 25"
    assert np.array_equal(png_at(slider[1]["url"]), denoised) and [g["caption"] for g in gallery] == [
        "noisy input", "gaussian"]
    assert table["headers"] == ["method", "seconds"]
    assert source.startswith("Model **gaussian** served from the bundled checkpoint") and "ensemble" not in source

    # With a progress token, each output is its own content, and the download comes back as the image itself
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(c.data)))) for c in options.content
              if c.type == "image"]
    text = "\n".join(c.text for c in options.content if c.type == "text")
    assert len(images) == 1 and images[0].shape == noisy.shape and not np.array_equal(images[0], denoised)
    assert psnr(clean, images[0]) > psnr(clean, noisy) + 3
    assert "With the ×8 self-ensemble." in text and "pixel-shuffle stride 2" in text  # the options reach the model
    assert progress, "the call that asked for progress got none"

    (content,) = estimate.content
    words, figures = ast.literal_eval(content.text)
    assert words.startswith("Noise estimate: looks like Gaussian noise") and "Suggested model: gaussian" in words
    assert figures["kind"] == "gaussian" and figures["model"] == "gaussian" and figures["stride"] is None
    assert 15 < figures["sigma"] < 35 and figures["param"] == figures["sigma"], figures


def test_the_older_sse_transport_lists_the_same_tools(server):
    async def listed(url):
        async with sse_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return {tool.name for tool in (await session.list_tools()).tools}

    assert asyncio.run(listed(server[1] + "gradio_api/mcp/sse")) == TOOLS | ALSO_TOOLS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", [{"args": ["--no-mcp"]}, {"env": {"GRADIO_MCP_SERVER": "False"}}],
                         ids=["--no-mcp", "GRADIO_MCP_SERVER=False"])
def test_the_app_launched_with_mcp_off_serves_no_schema(how, tmp_path):
    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1"} | how.get("env", {})
    with open(tmp_path / "app.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *how.get("args", [])], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            assert time.monotonic() < deadline, "the app did not start in 240 s"
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(1)
        assert httpx.get(url + "gradio_api/mcp/schema", timeout=10).status_code == 404
        assert httpx.post(url + "gradio_api/mcp/", json={}, timeout=10).status_code == 404
        assert "MCP server" not in (tmp_path / "app.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("value, wanted", [(None, True), ("", True), ("true", True), ("True", True),
                                           ("False", False), ("false", False)])
def test_mcp_is_on_unless_switched_off(value, wanted):
    assert app.mcp_wanted(value) is wanted


def test_a_misspelt_mcp_switch_is_refused_in_plain_words():
    with pytest.raises(SystemExit, match="GRADIO_MCP_SERVER='off': give True or False"):
        app.mcp_wanted("off")

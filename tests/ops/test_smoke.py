"""The local model's smoke test that `sovereign up` runs at start, in a child process."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable

import pytest

from arbiter.settings import load_settings
from sovereign.commands import run
from tests.pipeline.conftest import Stack, wait_for


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from this test only (the smoke test's child reads the environment)."""
    for name in list(os.environ):
        if name.startswith("SOVEREIGN_"):
            monkeypatch.delenv(name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.inference
def test_the_embedded_model_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("SOVEREIGN_LOCAL_BACKEND", "embedded")
    settings = load_settings()
    said = run.smoke_test(settings)
    assert said.startswith("embedded smollm2-135m answered a test prompt in ")


def test_a_model_that_crashes_its_process_is_one_sentence_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOVEREIGN_LOCAL_BACKEND", "embedded")
    # A real segfault in the child, as llama.cpp's AMX repacking gave.
    monkeypatch.setattr(run, "SMOKE_CODE", "import ctypes; ctypes.string_at(0)")
    said = run.smoke_test(load_settings())
    assert said == (
        "the embedded backend crashed its process (SIGSEGV) on a test prompt, so local tasks "
        "would crash the local worker; set SOVEREIGN_LOCAL_BACKEND=ollama (with Ollama "
        "running) or rebuild llama.cpp (`rm -f .venv/.llama-* && make install`); cloud work "
        "runs meanwhile"
    )


def test_a_server_that_does_not_answer_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOVEREIGN_LOCAL_BACKEND", "openai_compat")
    monkeypatch.setenv("SOVEREIGN_OPENAI_COMPAT_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    said = run.smoke_test(load_settings())
    assert said.startswith("the openai_compat backend failed a test prompt (")
    assert said.endswith("); cloud work runs meanwhile")
    assert "\n" not in said and "Traceback" not in said


@pytest.mark.e2e
def test_up_stays_up_for_cloud_work_when_the_local_model_fails(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack("unused")
    del stack.env["SOVEREIGN_BROKER_URL"]
    stack.configure(openai_compat_base_url=f"http://127.0.0.1:{closed_port()}/v1")
    up = stack.start("up", "up", "--no-flower")
    wait_for(lambda: "sovereign is ready." in stack.log("up"), 90, "the ready banner")
    assert "local model: the openai_compat backend failed a test prompt (" in stack.log("up")
    done = stack.sovereign("enqueue", "strategy", "a cloud task", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["worker"].startswith("cloud@")
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=90) == 0

"""A loopback server speaking OpenAI's chat/completions and responses wire formats.

Pipeline tests point both the `openai` cloud backend and the `openai_compat` local backend
at it, so real worker processes make real HTTP calls through the real SDK. It records
every call, so a test can count what reached a model. A prompt containing ``SLOW:<s>``
makes the answer wait that many seconds (for killing a worker mid-call); ``FLAKY:<n>``
answers 429 to the first n calls of that prompt. A structured answer is a research brief
(summary, key points, confidence, follow-ups, sources): ``FOLLOWUPS:<n>`` makes it propose
n follow-up questions (picked by the prompt from a bank) that repeat the prompt's markers, ``CONFIDENCE:<x>`` sets its
self-rating (default 0.9), ``SOURCES:<a,b>`` its sources, and ``INVALID:<n>`` makes the
first n structured answers to prompts holding that very marker not JSON at all;
``ASK:<words_with_underscores>`` proposes that very follow-up question.

With ``real_tokens=True`` it bills like a provider at its worst: the input counted by a
real byte-level BPE tokenizer plus OpenAI's documented chat framing (3 tokens a message,
3 more to prime the reply), and every output token the request allowed.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW = re.compile(r"SLOW:(\d+(?:\.\d+)?)")
FLAKY = re.compile(r"FLAKY:(\d+)")
FOLLOWUPS = re.compile(r"FOLLOWUPS:(\d+)")
CONFIDENCE = re.compile(r"CONFIDENCE:(\d+(?:\.\d+)?)")
SOURCES = re.compile(r"SOURCES:(\S+)")
INVALID = re.compile(r"INVALID:(\d+)")
ASK = re.compile(r"ASK:(\S+)")
# Follow-up questions that differ in meaning, so de-duplication keeps them apart.
QUESTIONS = (
    "Which suppliers in Lisbon sell recycled signage board",
    "How much did museums spend on wayfinding before 2020",
    "What do fire regulations require of exhibition materials",
    "How do you insure a travelling exhibition",
    "How do visitors with low vision read gallery labels",
    "What humidity damages printed paper archives",
    "Who funds small design studios in Portugal",
    "How long does anodised aluminium last outdoors",
    "Which colour contrast ratios meet accessibility law",
    "What does a museum pay for a bilingual audio guide",
    "How are ceramic tiles restored after frost damage",
    "Which project management tools suit a five-person studio",
)
# Marker-like words (CLIENT-SECRET-7731, FOLLOWUPS:2) that follow-ups carry along.
MARKER = re.compile(r"^[A-Z][A-Z0-9]*(?:[-:][A-Z0-9.]+)+$")


class FakeOpenAI:
    """Start with `start()`; `calls` lists (path, model, prompt) of every request."""

    def __init__(self, *, real_tokens: bool = False) -> None:
        self.real_tokens = real_tokens
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def prompts(self) -> list[str]:
        with self._lock:
            return [c["prompt"] for c in self.calls]

    def count(self, prompt: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c["prompt"] == prompt)

    def _record(self, path: str, body: dict[str, Any], prompt: str) -> None:
        with self._lock:
            call = {"path": path, "model": body.get("model"), "prompt": prompt, "at": time.time()}
            self.calls.append(call)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                if path.endswith("/chat/completions"):
                    prompt = " ".join(str(m.get("content")) for m in body.get("messages", []))
                elif path.endswith("/responses"):
                    prompt = _responses_prompt(body.get("input"))
                else:
                    self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                    return
                fake._record(path, body, prompt)
                flaky = FLAKY.search(prompt)
                if flaky and fake.count(prompt) <= int(flaky.group(1)):
                    error = {"message": "Rate limit reached", "type": "rate_limit_exceeded"}
                    self._send(429, {"error": error})
                    return
                slow = SLOW.search(prompt)
                if slow:
                    time.sleep(float(slow.group(1)))
                words = prompt.split()
                text = "fake answer: " + " ".join(words[-8:])
                if _wants_json(body):
                    text = _brief(fake, prompt, text)
                n_in, n_out = max(1, len(words)), len(text.split())
                if fake.real_tokens:
                    n_in, n_out = _billed(body)
                if path.endswith("/chat/completions"):
                    self._send(200, _chat(body, text, n_in, n_out))
                else:
                    self._send(200, _response(body, text, n_in, n_out))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _brief(fake: FakeOpenAI, prompt: str, summary: str) -> str:
    """A research brief as JSON, shaped by the prompt's markers."""
    invalid = INVALID.search(prompt)
    if invalid:
        seen = sum(1 for p in fake.prompts() if invalid.group(0) in p)
        if seen <= int(invalid.group(1)):
            return "Sorry, here is my brief in prose rather than JSON."
    wanted = FOLLOWUPS.search(prompt)
    asked = min(int(wanted.group(1)), 3) if wanted else 0
    markers = " ".join(dict.fromkeys(w for w in prompt.split() if MARKER.match(w)))
    stems = random.Random(prompt).sample(QUESTIONS, asked)
    asked_for = [m.replace("_", " ") for m in ASK.findall(prompt)]
    follow_ups = asked_for + [f"{stem} {markers}?" for stem in stems]
    rating = CONFIDENCE.search(prompt)
    sources = SOURCES.search(prompt)
    return json.dumps(
        {
            "summary": summary,
            "key_points": ["a point the brief makes"],
            "confidence": float(rating.group(1)) if rating else 0.9,
            "follow_ups": follow_ups,
            "sources": sources.group(1).split(",") if sources else ["https://example.org/a"],
        }
    )


def _billed(body: dict[str, Any]) -> tuple[int, int]:
    """Input by a real BPE tokenizer plus chat framing; output: all that was allowed."""
    from tests.tokens import count_tokens

    texts = [str(m.get("content") or "") for m in body.get("messages", [])]
    if not texts:
        texts = [_responses_prompt(body.get("input")), str(body.get("instructions") or "")]
    n_in = sum(count_tokens(t) + 3 for t in texts) + 3
    fmt = body.get("response_format") or (body.get("text") or {}).get("format")
    if isinstance(fmt, dict):
        n_in += count_tokens(json.dumps(fmt))
    allowed = (
        body.get("max_completion_tokens")
        or body.get("max_tokens")
        or body.get("max_output_tokens")
        or 1
    )
    return n_in, int(allowed)


def _responses_prompt(value: Any) -> str:
    if isinstance(value, str):
        return value
    parts: list[str] = []
    for item in value or []:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return " ".join(parts)


def _wants_json(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format") or (body.get("text") or {}).get("format")
    return isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object")


def _chat(body: dict[str, Any], text: str, n_in: int, n_out: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": n_in,
            "completion_tokens": n_out,
            "total_tokens": n_in + n_out,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def _response(body: dict[str, Any], text: str, n_in: int, n_out: int) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model"),
        "output": [
            {
                "type": "message",
                "id": "msg_fake",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": n_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": n_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": n_in + n_out,
        },
    }

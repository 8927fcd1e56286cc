"""The worker side without a broker: `run_job` against a real ledger and a fake backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arbiter.errors import ConfigError, TaskFailed, TransientBackendError
from arbiter.gate import TaskRequest
from arbiter.settings import load_settings
from tasks.complete import SetAside, run_job
from tasks.kinds import Job, make_job
from tasks.names import COMPLETE
from tasks.router import GateRouter
from tasks.runtime import Runtime, RuntimeSlot, build_runtime
from tests.conftest import ROOT
from workers.fake import FakeBackend
from workers.registry import Backends

POLICY = """
strategy R returns Route {
    when { task.confidential == true } then Local { provider: "fake", model: "m" }
    else Local { provider: "fake", model: "m" }
}
"""


def make_runtime(tmp_path: Path, policy: str = POLICY) -> Runtime:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "p.arb").write_text(policy)
    settings = load_settings(
        {
            "SOVEREIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SOVEREIGN_POLICY_PATH": str(tmp_path / "rules"),
            "SOVEREIGN_PRICES_PATH": str(ROOT / "rules" / "prices.toml"),
            "SOVEREIGN_LOCAL_BACKEND": "fake",
        }
    )
    # No broker: queue depths are simply unknown to the gate.
    return build_runtime(settings, "redis://127.0.0.1:1/0")


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return make_runtime(tmp_path)


def admit(runtime: Runtime, job: Job, attempt: int = 1) -> dict[str, Any]:
    admission = runtime.gate.admit(
        TaskRequest(
            task_id=job.job_id,
            kind=job.kind,
            estimated_tokens=job.estimated_tokens,
            max_tokens=job.max_tokens,
            attempt=attempt,
        )
    )
    assert admission.verdict == "proceed"
    return {"route": admission.route}


def with_fake(runtime: Runtime, **options: Any) -> FakeBackend:
    fake = FakeBackend(name="fake", tier="local", **options)
    runtime.backends = Backends(runtime.settings, preset={("local", "fake"): fake})
    return fake


def test_a_redelivered_message_does_not_call_the_model_again(runtime: Runtime) -> None:
    fake = with_fake(runtime)
    job = make_job(runtime.settings, kind="classify", prompt="is this spam?")
    gate = admit(runtime, job)
    first = run_job(runtime, job, 1, gate)
    again = run_job(runtime, job, 1, gate)
    assert len(fake.calls) == 1
    assert again["text"] == first["text"] and again["cost_usd"] == first["cost_usd"]
    assert runtime.ledger.spend_report().total.calls == 1


def test_a_failed_call_releases_its_reservation(runtime: Runtime) -> None:
    with_fake(runtime, failures=[TransientBackendError("overloaded")])
    job = make_job(runtime.settings, kind="classify", prompt="try me")
    gate = admit(runtime, job)
    assert runtime.ledger.reservation_held(job.job_id, 1)
    with pytest.raises(TransientBackendError):
        run_job(runtime, job, 1, gate)
    assert not runtime.ledger.reservation_held(job.job_id, 1)
    assert runtime.ledger.call_record(job.job_id, 1) is None


def test_halted_before_the_call_the_task_waits_queued(runtime: Runtime) -> None:
    fake = with_fake(runtime)
    job = make_job(runtime.settings, kind="classify", prompt="stop me")
    gate = admit(runtime, job)
    runtime.ledger.set_halt("local", True, "GPU swap")
    with pytest.raises(SetAside, match="waits for `sovereign resume`: GPU swap"):
        run_job(runtime, job, 1, gate)
    assert fake.calls == []
    assert not runtime.ledger.reservation_held(job.job_id, 1)
    assert (runtime.ledger.task(job.job_id) or {})["status"] == "queued", "not failed"
    assert runtime.ledger.halted_tasks() == [(job.job_id, 1, "local")]


def test_a_halt_of_the_other_tier_does_not_stop_the_call(runtime: Runtime) -> None:
    fake = with_fake(runtime)
    job = make_job(runtime.settings, kind="classify", prompt="go on")
    gate = admit(runtime, job)
    runtime.ledger.set_halt("cloud", True, "provider incident")
    assert run_job(runtime, job, 1, gate)["text"]
    assert len(fake.calls) == 1


def test_no_call_without_a_held_reservation(runtime: Runtime) -> None:
    fake = with_fake(runtime)
    job = make_job(runtime.settings, kind="classify", prompt="expired")
    gate = admit(runtime, job)
    runtime.ledger.release(job.job_id, 1, "test")
    with pytest.raises(TaskFailed, match="no budget reservation held"):
        run_job(runtime, job, 1, gate)
    assert fake.calls == []


def test_no_call_for_an_attempt_the_ledger_has_no_decision_on(runtime: Runtime) -> None:
    """A message whose admission never reached the disk (a power cut) is refused."""
    fake = with_fake(runtime)
    job = make_job(runtime.settings, kind="classify", prompt="lost in a power cut")
    with pytest.raises(TaskFailed, match="no decision in this worker's ledger"):
        run_job(runtime, job, 1, {"route": {"tier": "local", "provider": "fake", "model": "m"}})
    assert fake.calls == []
    assert runtime.ledger.task(job.job_id) is None


def test_a_route_to_a_queue_no_worker_consumes_is_refused(tmp_path: Path) -> None:
    runtime = make_runtime(
        tmp_path, POLICY.replace('model: "m" }\n}', 'model: "m", queue: "gpu" }\n}')
    )
    router = GateRouter(RuntimeSlot(lambda: runtime))
    job = make_job(runtime.settings, kind="classify", prompt="where do I go?")
    kwargs: dict[str, Any] = {"job": job.to_message()}
    with pytest.raises(ConfigError, match="queue 'gpu', which no worker consumes; use one of"):
        router(COMPLETE, (), kwargs, {})
    assert "gate" not in kwargs
    assert not runtime.ledger.reservation_held(job.job_id, 1), "the reservation was released"
    assert (runtime.ledger.task(job.job_id) or {}).get("status") == "failed"

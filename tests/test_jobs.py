"""The scheduler wrapper: triggers from `schedule:`, no overlap, failures counted, reschedule."""

from __future__ import annotations

import asyncio

import pytest

from jarvisd.config import ScheduleConfig
from jarvisd.jobs import JobError, JobScheduler
from jarvisd.lifecycle import deadline_in
from jarvisd.observe.metrics import Metrics


def schedule(**values: str | None) -> ScheduleConfig:
    base: dict[str, str | None] = {"index": None, "maintenance": None, "memory_sample": None}
    return ScheduleConfig.model_validate({**base, **values})


def runs(metrics: Metrics, job: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "jarvis_job_runs_total", {"job": job, "result": result}
    )
    return value or 0.0


async def test_interval_job_runs_and_is_counted() -> None:
    metrics = Metrics()
    scheduler = JobScheduler(schedule(memory_sample="100ms"), metrics)
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    scheduler.register("memory_sample", job, schedule_key="memory_sample", description="t")
    await scheduler.start()
    await asyncio.wait_for(ran.wait(), 10)
    await scheduler.stop(deadline_in(10))
    assert runs(metrics, "memory_sample", "ok") >= 1
    described = scheduler.describe()[0]
    assert described.schedule == "100ms" and described.last_result == "ok"


async def test_a_job_never_runs_beside_itself() -> None:
    scheduler = JobScheduler(schedule(), Metrics())
    release = asyncio.Event()
    active = 0
    most = 0

    async def slow() -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await release.wait()
        active -= 1

    scheduler.register("index", slow, schedule_key="index", description="t")
    await scheduler.start()
    scheduler.run_now("index")
    with pytest.raises(JobError) as caught:
        scheduler.run_now("index")
    assert caught.value.code == "conflict"
    await scheduler._scheduled_run("index")  # a scheduled tick while it runs is skipped
    release.set()
    await asyncio.sleep(0.05)
    await scheduler.stop(deadline_in(10))
    assert most == 1


async def test_unknown_job() -> None:
    scheduler = JobScheduler(schedule(), Metrics())
    with pytest.raises(JobError) as caught:
        scheduler.run_now("nope")
    assert caught.value.code == "not_found"


async def test_failures_are_counted_and_reported() -> None:
    metrics = Metrics()
    scheduler = JobScheduler(schedule(), metrics)

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    scheduler.register("maintenance", broken, schedule_key="maintenance", description="t")
    await scheduler.start()
    job = scheduler.run_now("maintenance")
    assert job.task is not None
    await job.task
    await scheduler.stop(deadline_in(10))
    assert runs(metrics, "maintenance", "error") == 1
    assert scheduler.failures_since_last_call() == 1
    assert scheduler.failures_since_last_call() == 0
    assert scheduler.describe()[0].last_error == "RuntimeError: disk on fire"


async def test_reconfigure_reschedules_and_turns_off() -> None:
    scheduler = JobScheduler(schedule(index="1h"), Metrics())

    async def job() -> None:
        return None

    scheduler.register("index", job, schedule_key="index", description="t")
    await scheduler.start()
    first = scheduler.describe()[0].next_run
    assert first is not None
    assert scheduler.reschedule(schedule(index="0 3 * * sun")) == ["index"]
    assert scheduler.describe()[0].next_run != first
    assert scheduler.reschedule(schedule(index=None)) == ["index"]
    assert scheduler.describe()[0].next_run is None
    await scheduler.stop(deadline_in(10))


async def test_exclusive_group_serialises_jobs() -> None:
    scheduler = JobScheduler(schedule(), Metrics())
    order: list[str] = []

    def make(name: str) -> object:
        async def job() -> None:
            order.append(f"{name}-start")
            await asyncio.sleep(0.05)
            order.append(f"{name}-end")

        return job

    scheduler.register(
        "index",
        make("index"),
        schedule_key="index",
        description="t",  # type: ignore[arg-type]
        exclusive_group="store",
    )
    scheduler.register(
        "maintenance",
        make("maint"),
        schedule_key="maintenance",  # type: ignore[arg-type]
        description="t",
        exclusive_group="store",
    )
    await scheduler.start()
    first = scheduler.run_now("index")
    second = scheduler.run_now("maintenance")
    assert first.task is not None and second.task is not None
    await asyncio.gather(first.task, second.task)
    await scheduler.stop(deadline_in(10))
    assert order == ["index-start", "index-end", "maint-start", "maint-end"]

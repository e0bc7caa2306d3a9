"""Background jobs on APScheduler 3 (AsyncIOScheduler): declared once, run with care.

Every job is a coroutine function registered with the `schedule:` key that
times it. A job never runs beside itself (scheduled or on demand), late runs
coalesce into one, and every run is logged, counted and timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jarvisd.config import Config, ConfigDiff, ScheduleConfig, parse_schedule
from jarvisd.errors import DomainError
from jarvisd.logs import get_logger
from jarvisd.observe.metrics import Metrics

log = get_logger("jarvisd.jobs")

JobFunction = Callable[[], Awaitable[Any]]


class JobError(DomainError):
    """A job request that cannot be honoured (unknown id, already running)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass
class JobState:
    id: str
    description: str
    schedule_key: str
    function: JobFunction
    # Some jobs must not overlap others (maintenance vs indexing): a shared lock.
    exclusive_group: str | None = None
    running: bool = False
    runs: int = 0
    failures: int = 0
    last_started: float | None = None
    last_finished: float | None = None
    last_duration: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    next_run: datetime | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class JobReport:
    """One job as `/v1/jobs` and `/v1/status` list it: its schedule, its runs, the last one."""

    id: str
    description: str
    schedule: str | None  # its `schedule:` entry (interval or crontab); None: off
    running: bool
    runs: int
    failures: int
    last_started: float | None  # time.time()
    last_duration_seconds: float | None
    last_result: str | None  # "ok", "error", "cancelled"
    last_error: str | None
    next_run: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "schedule": self.schedule,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            "last_started": _iso(self.last_started),
            "last_duration_seconds": self.last_duration_seconds,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "next_run": self.next_run.isoformat() if self.next_run else None,
        }


def _trigger(spec: str | None) -> IntervalTrigger | CronTrigger | None:
    parsed = parse_schedule(spec)
    if parsed is None:
        return None
    if parsed[0] == "interval":
        return IntervalTrigger(seconds=parsed[1])
    return CronTrigger.from_crontab(parsed[1])


class JobScheduler:
    name = "jobs"

    def __init__(self, schedule: ScheduleConfig, metrics: Metrics) -> None:
        self._schedule = schedule
        self._metrics = metrics
        self._jobs: dict[str, JobState] = {}
        self._groups: dict[str, asyncio.Lock] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._failures_seen = 0

    # ------------------------------------------------------------ declaration

    def register(
        self,
        job_id: str,
        function: JobFunction,
        *,
        schedule_key: str,
        description: str,
        exclusive_group: str | None = None,
    ) -> None:
        if job_id in self._jobs:
            raise ValueError(f"job {job_id!r} registered twice")
        self._jobs[job_id] = JobState(
            job_id, description, schedule_key, function, exclusive_group=exclusive_group
        )
        if exclusive_group:
            self._groups.setdefault(exclusive_group, asyncio.Lock())
        if self._scheduler is not None:
            self._schedule_job(self._jobs[job_id])

    def group_lock(self, group: str) -> asyncio.Lock:
        """The lock that serialises a group of jobs, for work started outside the scheduler."""
        return self._groups.setdefault(group, asyncio.Lock())

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._scheduler = AsyncIOScheduler(
            timezone=datetime.now().astimezone().tzinfo,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        for job in self._jobs.values():
            self._schedule_job(job)
        self._scheduler.start()

    async def stop(self, deadline: float) -> None:
        """Running jobs get half the time left, then are cancelled: the components
        stopped after the scheduler (the store's checkpoint) keep the other half."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        running = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        if running:
            timeout = max(0.1, (deadline - time.monotonic()) / 2)
            _done, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def reconfigure(self, config: Config, diff: ConfigDiff) -> None:
        if diff.touches("schedule"):
            self.reschedule(config.schedule)

    def reschedule(self, schedule: ScheduleConfig) -> list[str]:
        """Reschedule the jobs whose `schedule:` entry changed; returns their ids."""
        changed = []
        old = self._schedule
        self._schedule = schedule
        for job in self._jobs.values():
            if getattr(old, job.schedule_key) != getattr(schedule, job.schedule_key):
                self._schedule_job(job)
                changed.append(job.id)
        return changed

    def _schedule_job(self, job: JobState) -> None:
        if self._scheduler is None:
            return
        if self._scheduler.get_job(job.id) is not None:
            self._scheduler.remove_job(job.id)
        trigger = _trigger(getattr(self._schedule, job.schedule_key))
        job.next_run = None
        if trigger is None:
            return
        scheduled = self._scheduler.add_job(
            self._scheduled_run, trigger, args=[job.id], id=job.id, name=job.description
        )
        job.next_run = getattr(scheduled, "next_run_time", None)

    # ------------------------------------------------------------------ runs

    async def _scheduled_run(self, job_id: str) -> None:
        job = self._jobs[job_id]
        if job.running:
            log.info("job.skipped", job=job_id, reason="still running")
            return
        await self._launch(job, trigger="schedule")

    def run_now(self, job_id: str) -> JobState:
        """Start a job at once; JobError when unknown or already running."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError("not_found", f"no job {job_id!r}; known: {', '.join(self._jobs)}")
        if job.running:
            raise JobError("conflict", f"job {job_id!r} is already running")
        job.running = True  # claimed now, so a second request is refused at once
        job.task = asyncio.get_running_loop().create_task(self._execute(job, "request"))
        return job

    async def _launch(self, job: JobState, trigger: str) -> None:
        job.running = True
        job.task = asyncio.current_task()
        await self._execute(job, trigger)

    async def _execute(self, job: JobState, trigger: str) -> None:
        lock = self._groups.get(job.exclusive_group) if job.exclusive_group else None
        try:
            if lock is not None:
                if lock.locked():
                    log.info("job.waiting", job=job.id, group=job.exclusive_group)
                async with lock:
                    await self._timed(job, trigger)
            else:
                await self._timed(job, trigger)
        finally:
            job.running = False
            job.task = None
            self._refresh_next_run(job)

    async def _timed(self, job: JobState, trigger: str) -> None:
        job.last_started = time.time()
        started = time.perf_counter()
        log.info("job.started", job=job.id, trigger=trigger)
        result = "ok"
        try:
            await job.function()
        except asyncio.CancelledError:
            result = "cancelled"
            raise
        except Exception as error:
            result = "error"
            job.failures += 1
            job.last_error = f"{type(error).__name__}: {error}"
            log.error("job.failed", job=job.id, error=job.last_error, exc_info=True)
        finally:
            duration = time.perf_counter() - started
            job.runs += 1
            job.last_finished = time.time()
            job.last_duration = duration
            job.last_result = result
            if result == "ok":
                job.last_error = None
            self._metrics.job_runs.labels(job=job.id, result=result).inc()
            self._metrics.job_duration.labels(job=job.id).observe(duration)
            if result != "error":
                log.info("job.finished", job=job.id, result=result, seconds=round(duration, 3))

    def _refresh_next_run(self, job: JobState) -> None:
        if self._scheduler is not None:
            scheduled = self._scheduler.get_job(job.id)
            job.next_run = getattr(scheduled, "next_run_time", None) if scheduled else None

    # ---------------------------------------------------------------- reading

    def failures_since_last_call(self) -> int:
        """Failed runs since the previous call: the `job_failures` alert metric."""
        total = sum(job.failures for job in self._jobs.values())
        new, self._failures_seen = total - self._failures_seen, total
        return new

    def describe(self) -> tuple[JobReport, ...]:
        reports = []
        for job in self._jobs.values():
            self._refresh_next_run(job)
            reports.append(
                JobReport(
                    id=job.id,
                    description=job.description,
                    schedule=getattr(self._schedule, job.schedule_key),
                    running=job.running,
                    runs=job.runs,
                    failures=job.failures,
                    last_started=job.last_started,
                    last_duration_seconds=job.last_duration,
                    last_result=job.last_result,
                    last_error=job.last_error,
                    next_run=job.next_run,
                )
            )
        return tuple(reports)

    def get(self, job_id: str) -> JobState | None:
        return self._jobs.get(job_id)


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None

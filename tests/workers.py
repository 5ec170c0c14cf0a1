"""Helpers for tests that run `aisle worker` jobs in this process (`tests/serving.py` runs them as processes)."""

from __future__ import annotations

from aisle.config import Settings
from aisle.pipeline import PipelineConfig
from aisle.worker import Worker
from aisle.worker.loop import Outcome


def run_job(settings: Settings, job: str = "refit", *, pipeline: PipelineConfig | None = None) -> Outcome:
    """One worker job, as `aisle worker --once JOB` runs it: the training lease taken first and given back whatever
    happens, so the next test's worker does not wait out the lease of this one."""
    worker = Worker(settings, pipeline=pipeline)
    worker.start()
    try:
        return worker.run(job)
    finally:
        worker.lease.release()

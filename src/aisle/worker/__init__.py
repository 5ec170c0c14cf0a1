"""`aisle worker`: keeps the served bundle current. Refreshes fold new events in every few seconds, refits rebuild
the pipeline and pass a gate on a temporal hold-out, and every version goes through the bundle registry
(`aisle.registry`) under a lease that lets one worker train at a time (see `aisle.worker.loop`)."""

from aisle.worker.lease import FileLease, Lease, LeaseLostError, PostgresLease, RedisLease, open_lease
from aisle.worker.loop import Outcome, Worker

__all__ = ["FileLease", "Lease", "LeaseLostError", "Outcome", "PostgresLease", "RedisLease", "Worker", "open_lease"]

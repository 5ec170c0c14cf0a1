"""Sticky assignment of shoppers to experiment arms.

An arm is chosen by a salted hash of the shopper's id, not stored anywhere: every worker, replica and restart
computes the same arm for the same shopper without sharing state, and changing the salt (or the experiment name)
reshuffles everyone for a new experiment on the same traffic. SHA-256 rather than Python's `hash()`, which is
randomised per process; its first 8 bytes give a uniform number in [0, 1) that the arms' weights cut into
intervals, so an arm with weight 2 gets twice the shoppers of an arm with weight 1.
"""

from __future__ import annotations

import hashlib

from aisle.config import ArmConfig, ExperimentConfig

_SCALE = float(2**64)


def bucket(shopper: str, experiment: ExperimentConfig) -> float:
    """A number in [0, 1) fixed by the shopper id, the experiment's name and its salt."""
    salt = experiment.salt or experiment.name
    digest = hashlib.sha256(f"{salt}\x1f{experiment.name}\x1f{shopper}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(user_or_session_id: str, experiment: ExperimentConfig) -> ArmConfig:
    """The arm this shopper (a user id, or the session id of a shopper without one) is served by: the same on
    every call, in every process."""
    total = sum(a.weight for a in experiment.arms)
    point = bucket(user_or_session_id, experiment) * total
    for arm in experiment.arms:
        point -= arm.weight
        if point < 0:
            return arm
    return experiment.arms[-1]  # rounding at the very top of the range


__all__ = ["assign", "bucket"]

"""Helpers for tests of Aisle and of code built on it: toy datasets and minimal reference models."""

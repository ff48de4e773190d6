"""Rebuild the read models from the topics without taking the reports down.

A second copy of the projection, under a fresh consumer group, reads every topic from
offset 0 into a new generation of collections while the reports keep reading the
active one. Once that copy has caught up, the ``meta`` document switches the active
generation; the running projection (which re-reads it every
``generation_refresh_seconds``) then writes into the new one as well, the copy
catches up once more so nothing that arrived meanwhile is missing, and the old
generation is dropped. ``crm_platform.replay.caught_up`` says when the copy has caught up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RebuildResult:
    generation: int
    previous: int
    facts: int
    seconds: float

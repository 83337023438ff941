"""Warnings that tiny test settings rightly trigger, asserted where they are expected (imported
by the test modules beside it). ``pytest.warns`` passes any other warning on, so a real
problem in the same block still shows."""

from __future__ import annotations

import contextlib

import pytest

from neurosculpt.validation import NeurosculptWarning

SHORT_TASK = r"neuroplastic. task \d+ trains \d+ steps, but"
"""``neuroplastic`` on tasks too short for its rules to act (``_warn_if_idle``); no colon, so
the pattern fits a ``filterwarnings`` spec."""

AT_CHANCE = r"task \d+ \(.*\) stayed at chance"
"""A task that ended at chance level (``validation.chance_warning``)."""


def short_tasks() -> pytest.WarningsRecorder:
    """Expect ``neuroplastic``'s warning that the tasks are too short for its rules."""
    return pytest.warns(NeurosculptWarning, match=SHORT_TASK)


def at_chance() -> pytest.WarningsRecorder:
    """Expect the warning that a task ended at chance level."""
    return pytest.warns(NeurosculptWarning, match=AT_CHANCE)


def short_tasks_for(strategy: str) -> contextlib.AbstractContextManager:
    """:func:`short_tasks` when ``strategy`` (a ``a+b`` spec) runs ``neuroplastic`` with its
    defaults on a tiny stream, else nothing."""
    return short_tasks() if "neuroplastic" in strategy.split("+") else contextlib.nullcontext()

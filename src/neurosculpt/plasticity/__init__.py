"""Plasticity: importance scores (here), learning signals and the neuroplasticity controller.

Scores rank synapses and units for pruning and consolidation; strategies in
:mod:`neurosculpt.strategies` decide what to do with them.
"""

from ..renames import renamed_attribute
from .importance import (
    SYNAPSE_SCORES,
    UNIT_SCORES,
    GradientStats,
    cofiring,
    firing_rates,
    gradient_stats,
    synapse_scores,
    unit_scores,
)

__all__ = ["SYNAPSE_SCORES", "UNIT_SCORES", "GradientStats", "cofiring", "firing_rates",
           "gradient_stats", "synapse_scores", "unit_scores"]


def __getattr__(name: str) -> object:  # old names (neuron_scores): neurosculpt.renames
    return renamed_attribute(__name__, name, globals())

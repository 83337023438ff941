"""Plasticity: importance scores (here), learning signals and the neuroplasticity controller.

Scores rank synapses and neurons for pruning and consolidation; strategies in
:mod:`neurosculpt.strategies` decide what to do with them.
"""

from .importance import (
    NEURON_SCORES,
    SYNAPSE_SCORES,
    GradientStats,
    cofiring,
    firing_rates,
    gradient_stats,
    neuron_scores,
    synapse_scores,
)

__all__ = ["NEURON_SCORES", "SYNAPSE_SCORES", "GradientStats", "cofiring", "firing_rates",
           "gradient_stats", "neuron_scores", "synapse_scores"]

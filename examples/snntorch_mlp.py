"""A spiking MLP written the way snnTorch's tutorials write one, trained by neurosculpt.

``snn.Leaky`` neurons in a loop over time steps, the same (direct-coded) input presented at every
step, spikes and membranes recorded per step; the output is the mean membrane potential of a
non-resetting output population (a leaky-integrator readout, as the built-in ``snn-mlp``).

    neurosculpt run -b split-fmnist -s develop --model examples/snntorch_mlp.py:factory \\
        --model-param hidden=256,256
"""

from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn


class SpikingMLP(nn.Module):
    def __init__(self, num_inputs: int, num_hidden: tuple[int, ...], num_outputs: int,
                 beta: float = 0.9, num_steps: int = 10, slope: float = 25.0) -> None:
        super().__init__()
        self.num_steps = num_steps
        spike_grad = surrogate.fast_sigmoid(slope=slope)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(num_inputs, num_hidden[0])
        self.lif1 = snn.Leaky(beta=beta, spike_grad=spike_grad, reset_mechanism="zero")
        self.fc2 = nn.Linear(num_hidden[0], num_hidden[1])
        self.lif2 = snn.Leaky(beta=beta, spike_grad=spike_grad, reset_mechanism="zero")
        self.fc3 = nn.Linear(num_hidden[1], num_outputs)
        self.lif3 = snn.Leaky(beta=beta, spike_grad=spike_grad, reset_mechanism="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mem3 = self.lif3.init_leaky()
        spk2_rec = []
        mem3_rec = []
        for _step in range(self.num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.fc3(spk2)
            _, mem3 = self.lif3(cur3, mem3)
            spk2_rec.append(spk2)
            mem3_rec.append(mem3)
        return torch.stack(mem3_rec, dim=0).mean(0)


def factory(input_shape: tuple[int, ...], n_outputs: int, hidden: tuple[int, ...] | int = (256, 256),
            steps: int = 10, beta: float = 0.9) -> nn.Module:
    """neurosculpt's model factory: ``(input_shape, n_outputs, **model_params) -> nn.Module``."""
    hidden = (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)
    n_in = 1
    for d in input_shape:
        n_in *= int(d)
    return SpikingMLP(n_in, hidden, n_outputs, beta=beta, num_steps=steps)

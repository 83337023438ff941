"""neurosculpt: continual learning with networks that grow, prune and consolidate themselves.

Quick start::

    import neurosculpt
    result = neurosculpt.run(benchmark="split-digits", strategy="ewc", model="snn-mlp")
    print(result.table())
"""

__version__ = "0.1.0"

from .benchmarks import BENCHMARKS, Benchmark, from_dataset, from_tensors, make_benchmark
from .loop import Learner, TrainConfig, TrainingDiverged
from .models import MODELS, ModelConfig, Network, build_model
from .network import PlasticNetwork
from .runs import RunConfig, RunResult, read_results, resume, run

__all__ = [
    "BENCHMARKS", "MODELS", "Benchmark", "Learner", "ModelConfig", "Network", "PlasticNetwork",
    "RunConfig", "RunResult", "TrainConfig", "TrainingDiverged", "__version__", "build_model",
    "from_dataset", "from_tensors", "make_benchmark", "read_results", "resume", "run",
]

"""Extra registry entries for the reproduce tests ($JAXLAB_REGISTRY_EXTRA=tests.core.toy_registry)."""

from jaxlab.core.registry import Experiment

EXPERIMENTS = (
    Experiment("toy", "Toy regression", "", "tests.core", "SGD learns a linear map.",
               runner="tests.core.toy_experiment:run", config="tests/core/toy_config.py", budget_s=60),
    Experiment("toy_broken", "Toy that crashes", "", "tests.core", "It crashes.",
               runner="tests.core.toy_broken:run", config="tests/core/toy_config.py", budget_s=60),
)

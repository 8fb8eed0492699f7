"""What a recipe gives, as measured: the record each module of ``jaxcnn.configs`` keeps beside its config."""

from __future__ import annotations

import dataclasses

NOT_MEASURED = "not measured"


@dataclasses.dataclass(frozen=True)
class Expected:
    """Test accuracy and wall time of the whole command (data, compilation, evaluation, checkpoints, plots).

    ``cpu``: on the 2-core CPU the project is developed on; ``gpu``: on one GPU, naming it. Each is a measured
    figure with where it came from, or NOT_MEASURED.
    """

    test_accuracy: str
    cpu: str
    gpu: str = NOT_MEASURED

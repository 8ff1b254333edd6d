"""Metrics of a task stream, computed from its accuracy matrix.

``matrix[i][j]`` is the validation accuracy (%) on task ``j`` measured right after training
on task ``i``; row ``i`` holds every task of the stream, later ones included (their heads are
untrained). With ``n`` rows (tasks learned so far) the metrics cover tasks ``0..n-1``:

- learning accuracy (Table 4 of the paper; Mehta et al. 2023's definition, La-MAML's
  "diagonal accuracy"): ``mean_k matrix[k][k]``, each task just after it was learned;
- average accuracy: ``mean_j matrix[n-1][j]``, every task at the end;
- forgetting (Mehta et al.): ``mean_j (max_{i >= j} matrix[i][j] - matrix[n-1][j])``;
- backward transfer (GEM, as La-MAML reports it): ``mean_j (matrix[n-1][j] - matrix[j][j])``.

The means run over all ``n`` tasks, the last one included (it adds 0 to forgetting and to
backward transfer), as both reference implementations do.
"""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def learning_accuracy(matrix: Matrix) -> float:
    return _mean([matrix[k][k] for k in range(len(matrix))])


def average_accuracy(matrix: Matrix) -> float:
    return _mean(list(matrix[-1][: len(matrix)]))


def forgetting(matrix: Matrix) -> float:
    last = len(matrix) - 1
    return _mean([max(matrix[i][j] for i in range(j, last + 1)) - matrix[last][j] for j in range(last + 1)])


def backward_transfer(matrix: Matrix) -> float:
    last = len(matrix) - 1
    return _mean([matrix[last][j] - matrix[j][j] for j in range(last + 1)])


def stream_metrics(matrix: Matrix) -> dict[str, float | None]:
    """Every metric above by name (None for an empty matrix)."""
    functions = {
        "learning_accuracy": learning_accuracy,
        "average_accuracy": average_accuracy,
        "forgetting": forgetting,
        "backward_transfer": backward_transfer,
    }
    return {name: function(matrix) if len(matrix) else None for name, function in functions.items()}

"""Which accounted Jobs the tracker sync logs, and the mark it leaves."""

from __future__ import annotations

from .conftest import make_job


def test_sync_selects_each_accounted_job_and_tracker_once() -> None:
    from datetime import datetime, timezone

    from carbontrack.reports.sync import Pending, mark_patch, pending

    a = make_job("a", extra_annotations={"carbontrack.io/mlflow-run-id": "r-a", "carbontrack.io/wandb-run-id": "w-a"})
    b = make_job("b", extra_annotations={"carbontrack.io/mlflow-run-id": "r-b",
                                         "carbontrack.io/mlflow-logged-at": "2026-11-30T00:00:00Z"})
    c = make_job("c")  # names no run
    d = make_job("d", extra_annotations={"carbontrack.io/mlflow-run-id": "r-d"})
    del d["metadata"]["annotations"]["carbontrack.io/accounted-at"]  # not accounted yet
    e = make_job("e", extra_annotations={"carbontrack.io/energy-kwh": "no-data"})
    e["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MLFLOW_RUN_ID", "value": "r-e"}]
    assert pending([a, b, c, d, e], ["mlflow", "wandb"]) == [
        Pending("ml", "a", "mlflow", "r-a"), Pending("ml", "a", "wandb", "w-a")]
    assert mark_patch("mlflow", datetime(2026, 11, 30, 1, tzinfo=timezone.utc)) == {
        "metadata": {"annotations": {"carbontrack.io/mlflow-logged-at": "2026-11-30T01:00:00Z"}}}

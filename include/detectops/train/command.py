"""``detectops train``: the entrypoint of the training pod.

    detectops train --dataset mlflow-artifacts:/.../dataset --label-map '{"1": "circle", "2": "square"}' \
        --out /tmp/train --config demo --tracking-uri http://10.244.0.1:5000 --experiment shapes \
        --run-key "$DAG_RUN_ID" --warm-start models:/shapes@champion --xcom-file /airflow/xcom/return.json

``--run-key`` makes a retried pod find the MLflow run of the pod it replaces (tag
``detectops.run_key``) instead of creating a second one, and resume from that run's
checkpoints. Progress goes to stderr (the task log); the result is JSON on stdout and, with
``--xcom-file``, in that file for KubernetesPodOperator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from detectops.errors import DetectOpsError

RUN_KEY_TAG = "detectops.run_key"
DEFAULT_EXPERIMENT = "detectops-training"
_REMOTE_PREFIXES = ("runs:/", "mlflow-artifacts:", "models:/", "s3://", "gs://", "http://", "https://")


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``detectops train`` (the CLI calls this, then ``run_from_args``)."""
    parser.add_argument("--dataset", required=True,
                        help="dataset version: a directory with train/ and val/ (COCO), or a runs:/ or mlflow-artifacts: URI")
    parser.add_argument("--label-map", required=True,
                        help='the model\'s label map: a JSON file, or inline JSON such as \'{"1": "circle"}\'')
    parser.add_argument("--out", required=True, type=Path, help="working directory; the SavedModel goes to OUT/model")
    parser.add_argument("--config", default="demo", help="tiny | demo | a JSON object or JSON file (TrainConfig fields)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI); without one nothing is logged")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    parser.add_argument("--run-key", default=None, help="find-or-create the run tagged detectops.run_key=KEY (retries resume)")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--warm-start", default=None, help="an exported model dir or a models:/ URI to start from")
    parser.add_argument("--xcom-file", default=None, help="also write the result here (KubernetesPodOperator XCom)")
    return parser


def _json_arg(value: str, what: str) -> Any:
    """Inline JSON, or the JSON of the file ``value`` names."""
    text = value.strip()
    if not text.startswith(("{", "[")):
        path = Path(value)
        if not path.is_file():
            raise DetectOpsError(f"--{what} {value!r} is neither inline JSON nor an existing JSON file.")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DetectOpsError(f"--{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).") from exc


def parse_label_map(value: str) -> dict[int, str]:
    raw = _json_arg(value, "label-map")
    try:
        label_map = {int(k): str(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError) as exc:
        raise DetectOpsError(f'--label-map must map integer ids to names, like {{"1": "circle"}} ({exc}).') from exc
    if not label_map:
        raise DetectOpsError("--label-map is empty; a detector needs at least one class.")
    return label_map


def parse_config(value: str) -> Any:
    from detectops.train.config import TrainConfig

    if value in ("tiny", "demo"):
        return TrainConfig.preset(value)
    return TrainConfig.from_dict(_json_arg(value, "config"))


def find_or_create_run(client: Any, experiment: str, run_key: str | None, run_name: str | None) -> tuple[str, bool]:
    """``(run_id, reused)``: the run tagged ``detectops.run_key=run_key`` in ``experiment``, else a new one."""
    from detectops.evaluate.mlflow_log import get_or_create_experiment

    experiment_id = get_or_create_experiment(client, experiment)
    tags = {"detectops.kind": "training"}
    if run_key:
        found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
                                   order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return run_id, True
        tags[RUN_KEY_TAG] = run_key
    return client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id, False


def _find_dataset_root(local: Path) -> Path:
    """The directory holding ``train/`` (a downloaded artifact may nest it one or two levels down)."""
    for candidate in [local, *sorted(p.parent for p in local.glob("*/train")), *sorted(p.parent for p in local.glob("*/*/train"))]:
        if (candidate / "train").is_dir():
            return candidate
    return local


def resolve_dataset(dataset: str, work_dir: Path, tracking_uri: str | None) -> Path:
    """A local dataset directory for ``dataset`` (URIs are downloaded under ``work_dir/dataset``)."""
    if not dataset.startswith(_REMOTE_PREFIXES):
        return Path(dataset)
    from detectops.evaluate.mlflow_log import connect

    connect(tracking_uri)
    import mlflow

    dst = work_dir / "dataset"
    dst.mkdir(parents=True, exist_ok=True)
    return _find_dataset_root(Path(mlflow.artifacts.download_artifacts(artifact_uri=dataset, dst_path=str(dst))))


def resolve_warm_start(source: str | None, work_dir: Path, tracking_uri: str | None) -> Path | None:
    if not source:
        return None
    if source.startswith("models:/") or source.startswith("runs:/"):
        from detectops.registry.models import download_saved_model

        return download_saved_model(source, work_dir / "warm_start", tracking_uri=tracking_uri)
    return Path(source)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``detectops train`` from parsed arguments; returns the XCom dict."""
    from detectops.train.checkpoints import LocalCheckpointStore, MlflowCheckpointStore
    from detectops.train.trainer import MlflowRun, train

    label_map = parse_label_map(args.label_map)
    config = parse_config(args.config)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    run = client = None
    reused = False
    if args.tracking_uri:
        from detectops.evaluate.mlflow_log import connect

        client = connect(args.tracking_uri)
        run_id, reused = find_or_create_run(client, args.experiment, args.run_key, args.run_name)
        run = MlflowRun(run_id=run_id, tracking_uri=args.tracking_uri)
        _log(f"MLflow run {run_id} ({'reused: a retry resumes from its checkpoints' if reused else 'new'})")
        checkpoints = MlflowCheckpointStore(args.tracking_uri, run_id, download_dir=out / "resume")
    else:
        checkpoints = LocalCheckpointStore(out / "checkpoints")

    try:
        dataset_dir = resolve_dataset(args.dataset, out, args.tracking_uri)
        warm_start = resolve_warm_start(args.warm_start, out, args.tracking_uri)
        result = train(dataset_dir, label_map, out, config, checkpoints=checkpoints, warm_start_from=warm_start,
                       log=_log, mlflow_run=run)
    except BaseException:
        if client is not None:
            client.set_terminated(run.run_id, status="FAILED")  # a retry sets it RUNNING again
        raise
    if client is not None:
        client.set_terminated(run.run_id, status="FINISHED")

    xcom = {
        "run_id": run.run_id if run else None,
        "model_uri": f"runs:/{run.run_id}/model" if run else None,
        "export_dir": result.export_dir,
        "epochs": result.epochs,
        "resumed_from_epoch": result.resumed_from_epoch,
        "warm_started_from": args.warm_start if result.warm_started_from else None,
        "final_loss": result.final_loss,
        "val_AP": result.val_AP,
        "val_AP50": result.val_AP50,
        "images_per_second": result.images_per_second,
    }
    if args.xcom_file:
        Path(args.xcom_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.xcom_file).write_text(json.dumps(xcom))
    return xcom

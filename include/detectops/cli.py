"""``detectops``: one command for every stage, used by people, pods and tests alike.

    detectops fetch-model centernet
    detectops validate include/datasets/real-eval
    detectops evaluate --model centernet --dataset real-eval [--mlflow URI]
    detectops generate-data OUT --images 200 --seed 7 [--brightness 0.5 --noise 0.1 --object-size 0.05 0.15]
    detectops land BATCH_DIR --model NAME [--drop LANDING_DIR]
    detectops versions ROOT [--add BATCH_DIR ... --parent ROOT/<sha256>]
    detectops serve --model-dir DIR [--host 0.0.0.0 --port 8080]
    detectops build --model-dir DIR --model-version 3 --registry 127.0.0.1:5000
    detectops promote MODEL VERSION | detectops rollback MODEL [--reason TEXT]
    detectops predict-batch DIR_OR_RUNS_URI --model DIR_OR_MODELS_URI [--tracking-uri URI] [--output DIR]
    detectops deploy --spec '{"model_name": ..., "model_version": ..., "image": "repo@sha256:..."}' [--xcom-file F]

Each subcommand prints its result as JSON on stdout (logs go to stderr), and exits 2 with
the error's message when the input is wrong (a ``DetectOpsError``), so scripts can rely on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from detectops.errors import DetectOpsError


def _print(result: Any) -> None:
    print(json.dumps(result, indent=2, default=str))


def cmd_fetch_model(args: argparse.Namespace) -> Any:
    from detectops.pipeline import fetch_model

    return fetch_model(args.source, tracking_uri=args.mlflow)


def cmd_validate(args: argparse.Namespace) -> Any:
    from detectops.pipeline import resolve_dataset
    from detectops.quality import validate_dataset
    from detectops.quality.purpose import resolve_purpose

    dataset = resolve_dataset(args.dataset)
    label_map = None
    if args.label_map is not None:
        from detectops.models.labels import read_label_map_file

        label_map = read_label_map_file(args.label_map)
    # The label map names the classes being trained; the allowed ids stay the dataset's own
    # unless a label map is given.
    report = validate_dataset(dataset["path"], label_map=label_map, report_dir=args.report_dir,
                              purpose=resolve_purpose(args.purpose, label_map))
    report.raise_for_failure()
    return report.to_dict()


def cmd_evaluate(args: argparse.Namespace) -> Any:
    from detectops.pipeline import evaluate_and_log, fetch_model, resolve_dataset

    return evaluate_and_log(
        fetch_model(args.model, tracking_uri=args.mlflow), resolve_dataset(args.dataset),
        tracking_uri=args.mlflow, score_threshold=args.score_threshold, experiment=args.experiment,
    )


def cmd_generate_data(args: argparse.Namespace) -> Any:
    from detectops.data import SyntheticSpec, generate_synthetic

    # Domain-shift knobs (darker, noisier, smaller objects): only what is given changes the spec.
    knobs = {k: v for k, v in (("brightness", args.brightness), ("noise", args.noise),
                               ("object_size", tuple(args.object_size) if args.object_size else None),
                               ("image_size", tuple(args.image_size) if args.image_size else None)) if v is not None}
    spec = SyntheticSpec(num_images=args.images, seed=args.seed, **knobs)
    return generate_synthetic(args.out, spec).to_dict()


def cmd_land(args: argparse.Namespace) -> Any:
    from detectops.data import landing

    if args.drop is not None:
        path = landing.drop_batch(args.dir, args.drop, name=args.name, model=args.model)
        return {"path": str(path), "ready": str(path) + landing.READY_SUFFIX, "model": args.model}
    from detectops.airflow_api import AirflowApi

    missing = [opt for opt, value in (("--mlflow", args.mlflow), ("--airflow-url", args.airflow_url),
                                      ("--password", args.password)) if not value]
    if missing:
        raise DetectOpsError(f"detectops land needs {', '.join(missing)} (or DETECTOPS_AIRFLOW_URL, "
                             "DETECTOPS_AIRFLOW_USERNAME/PASSWORD, MLFLOW_TRACKING_URI); or land by file drop with --drop DIR.")
    api = AirflowApi(args.airflow_url, args.username, args.password)
    try:
        return landing.land(args.dir, args.model, tracking_uri=args.mlflow, api=api, asset_uri=args.asset_uri)
    except (PermissionError, LookupError, ValueError) as exc:  # Airflow refused the login or the event
        raise DetectOpsError(f"the batch is stored, but Airflow did not take the event: {exc}") from exc


def cmd_versions(args: argparse.Namespace) -> Any:
    from detectops.data import versioning

    if args.add:
        return versioning.build_version(args.parent, args.add, args.root).to_dict()
    return [v.to_dict() for v in versioning.list_versions(args.root)]


def cmd_serve(args: argparse.Namespace) -> Any:
    from detectops.serve import ServeSettings, run

    overrides = {"model_dir": args.model_dir} if args.model_dir else {}
    run(ServeSettings.from_env(**overrides), host=args.host, port=args.port)
    return None


def cmd_build(args: argparse.Namespace) -> Any:
    from detectops.build import run_from_args

    return run_from_args(args)


def cmd_deploy(args: argparse.Namespace) -> Any:
    from detectops.deploy import run_from_args

    result = run_from_args(args)
    if args.xcom_file:
        # KubernetesPodOperator's sidecar reads the task's XCom from this file.
        Path(args.xcom_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.xcom_file).write_text(json.dumps(result, default=str))
    return result


def cmd_train(args: argparse.Namespace) -> Any:
    from detectops.train import run_from_args  # writes --xcom-file itself

    return run_from_args(args)


def cmd_predict_batch(args: argparse.Namespace) -> Any:
    from detectops.batch import predict_batch

    if not args.model:
        raise DetectOpsError("detectops predict-batch needs --model (a SavedModel directory or models:/<name>@<alias>) "
                             "or DETECTOPS_MODEL_DIR.")
    if args.workers is not None and args.workers < 1:
        raise DetectOpsError(f"--workers must be 1 or more (files scored at once), got {args.workers}")
    workers = {} if args.workers is None else {"workers": args.workers}  # else the library's default
    try:
        result = predict_batch(args.input, args.model, tracking_uri=args.tracking_uri, output_dir=args.output,
                               min_score=args.min_score, model_name=args.model_name, model_version=args.model_version,
                               **workers)
    except DetectOpsError as exc:
        from detectops.errors import is_transient

        if not args.xcom_file or is_transient(exc):
            raise  # exit 2; in a pod, a transient fault fails the pod and Airflow retries it
        # In a pod, a deterministic failure is the pod's answer, not a pod failure: Airflow
        # would retry a failed pod, and the same model and input fail the same way again.
        print(f"detectops predict-batch: {exc}", file=sys.stderr)
        result = {"error": str(exc), "input": args.input}
    if args.xcom_file:
        # KubernetesPodOperator's sidecar reads the task's XCom from this file.
        Path(args.xcom_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.xcom_file).write_text(json.dumps(result, default=str))
    return result


def cmd_promote(args: argparse.Namespace) -> Any:
    from detectops import registry

    return registry.promote(args.model, args.version, alias=args.alias, previous_alias=args.previous_alias,
                            tracking_uri=args.mlflow).to_dict()


def cmd_rollback(args: argparse.Namespace) -> Any:
    from detectops import registry

    move = registry.rollback(args.model, alias=args.alias, previous_alias=args.previous_alias,
                             from_version=args.from_version, reason=args.reason, tracking_uri=args.mlflow)
    print(f"{move.name}@{move.alias} is version {move.version} now; deploy its image: {move.image or '(none recorded)'}",
          file=sys.stderr)
    return move.to_dict()


def _alias_arguments(p: argparse.ArgumentParser) -> None:
    import os

    p.add_argument("--alias", default="champion")
    p.add_argument("--previous-alias", default="previous")
    p.add_argument("--mlflow", default=os.environ.get("MLFLOW_TRACKING_URI"), help="tracking URI (default $MLFLOW_TRACKING_URI)")


def build_parser() -> argparse.ArgumentParser:
    import os

    parser = argparse.ArgumentParser(prog="detectops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], Any], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("fetch-model", cmd_fetch_model, "Fetch, convert, verify and cache a detector; print its ModelRef.")
    p.add_argument("source", nargs="?", default="centernet",
                   help="centernet | zoo:<name> | https://...tar.gz | SavedModel dir | models:/<name>@<alias>")
    p.add_argument("--mlflow", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="tracking URI of models:/ and runs:/ sources (default $MLFLOW_TRACKING_URI)")

    p = add("validate", cmd_validate, "Run the Great Expectations suites on a COCO dataset.")
    p.add_argument("dataset", help="real-eval or a COCO dataset directory")
    p.add_argument("--report-dir", type=Path, default=None)
    p.add_argument("--purpose", choices=["evaluation", "training"], default="evaluation",
                   help="evaluation: no class must have boxes; training: every class of --label-map must")
    p.add_argument("--label-map", type=Path, default=None, help='JSON {"1": "name", ...} of the classes being trained')

    p = add("evaluate", cmd_evaluate, "Evaluate a detector on a dataset and log it to MLflow.")
    p.add_argument("--model", default="centernet")
    p.add_argument("--dataset", default="real-eval")
    p.add_argument("--mlflow", default=os.environ.get("MLFLOW_TRACKING_URI"), help="tracking URI (default $MLFLOW_TRACKING_URI)")
    p.add_argument("--score-threshold", type=float, default=0.3)
    p.add_argument("--experiment", default="detectops")

    p = add("generate-data", cmd_generate_data, "Write a deterministic synthetic COCO dataset.")
    p.add_argument("out", type=Path)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--brightness", type=float, default=None, help="pixel multiplier: < 1 darker (domain shift)")
    p.add_argument("--noise", type=float, default=None, help="Gaussian pixel noise, fraction of 255 (default 0.02)")
    p.add_argument("--object-size", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="object side as a fraction of the image's shorter side (default 0.12 0.4)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("W", "H"), default=None)

    p = add("land", cmd_land, "Land a COCO batch for level 1: store it and emit the batch-landed Asset event "
            "through Airflow's REST API, or (--drop) copy it into the file-drop landing area.")
    p.add_argument("dir", type=Path, help="the batch: a COCO dataset directory")
    p.add_argument("--model", required=True, help="the registered model the batch is for")
    p.add_argument("--drop", type=Path, default=None, help="land by file drop into this landing directory instead")
    p.add_argument("--name", default=None, help="batch name in the landing area (default: the directory's name)")
    p.add_argument("--mlflow", default=os.environ.get("MLFLOW_TRACKING_URI"), help="tracking URI (default $MLFLOW_TRACKING_URI)")
    p.add_argument("--airflow-url", default=os.environ.get("DETECTOPS_AIRFLOW_URL"), help="default $DETECTOPS_AIRFLOW_URL")
    p.add_argument("--username", default=os.environ.get("DETECTOPS_AIRFLOW_USERNAME", "admin"))
    p.add_argument("--password", default=os.environ.get("DETECTOPS_AIRFLOW_PASSWORD"), help="default $DETECTOPS_AIRFLOW_PASSWORD")
    p.add_argument("--asset-uri", default=None, help="default detectops://data/batch-landed")

    p = add("versions", cmd_versions, "List the dataset versions under ROOT, or build one from batches (--add).")
    p.add_argument("root", type=Path, help="directory of dataset versions (<root>/<sha256>/)")
    p.add_argument("--add", type=Path, nargs="+", default=None, help="batch directories to merge into a new version")
    p.add_argument("--parent", type=Path, default=None, help="the version to build on (a directory under ROOT)")

    p = add("serve", cmd_serve, "Serve a detector over HTTP (TF-Serving REST, /detect, upload page, metrics).")
    p.add_argument("--model-dir", default=None, help="SavedModel directory (default $DETECTOPS_MODEL_DIR)")
    p.add_argument("--host", default=os.environ.get("DETECTOPS_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("DETECTOPS_PORT", "8080")))

    p = add("predict-batch", cmd_predict_batch, "Score a directory (or stored batch) of images the way the service "
            "answers; write COCO results, a summary and a contact sheet; log them to MLflow.")
    p.add_argument("input", help="a directory of images, or runs:/<run id>/batch in MLflow's artifact store")
    p.add_argument("--model", default=os.environ.get("DETECTOPS_MODEL_DIR"),
                   help="SavedModel directory or models:/<name>@<alias> (default $DETECTOPS_MODEL_DIR)")
    p.add_argument("--tracking-uri", "--mlflow", dest="tracking_uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="MLflow: stored inputs, models:/ and where the run is logged (default $MLFLOW_TRACKING_URI)")
    p.add_argument("--output", type=Path, default=None, help="directory for the output files (default under the work dir)")
    p.add_argument("--min-score", type=float, default=None, help="detections counted from this score (default $DETECTOPS_MIN_SCORE, 0.3)")
    p.add_argument("--model-name", default=None, help="the registered model it is")
    p.add_argument("--model-version", default=os.environ.get("DETECTOPS_MODEL_VERSION"), help="the registered version it is")
    p.add_argument("--workers", type=int, default=os.environ.get("DETECTOPS_BATCH_WORKERS") or None,
                   help="files scored at once (default $DETECTOPS_BATCH_WORKERS, 2); the answers do not depend on it")
    p.add_argument("--xcom-file", default=None, help="also write the result here (KubernetesPodOperator XCom)")

    p = add("promote", cmd_promote, "Point champion at a version that serves; the old champion keeps 'previous'.")
    p.add_argument("model", help="registered model name")
    p.add_argument("version", help="model version to promote")
    _alias_arguments(p)

    p = add("rollback", cmd_rollback, "Point champion back at 'previous' and record why on the version left; "
            "prints the image to deploy (the detectops_rollback DAG also redeploys it).")
    p.add_argument("model", help="registered model name")
    p.add_argument("--from-version", default=None, help="the version expected to be champion now (makes a retry safe)")
    p.add_argument("--reason", default="rolled back by hand", help="recorded on the version rolled back from")
    _alias_arguments(p)

    from detectops import build, deploy  # argument definitions only; heavy imports stay inside

    p = add("build", cmd_build, "Build the serving image with a model baked in, push it, print its ImageRef.")
    build.configure_parser(p)

    p = add("deploy", cmd_deploy, "Apply the serving Deployment, wait for the rollout, smoke-test, roll back on failure.")
    deploy.configure_parser(p)
    p.add_argument("--xcom-file", default=None, help="also write the result here (KubernetesPodOperator XCom)")

    from detectops import train

    p = add("train", cmd_train, "Train a detector on a dataset version (CenterNet, from scratch or warm), export it, log to MLflow.")
    train.configure_parser(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
    except DetectOpsError as exc:
        print(f"detectops {args.command}: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

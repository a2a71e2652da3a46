"""The work of each level-1 step: small dicts in, small dicts out, no Airflow.

Data moves by reference: batches and dataset versions live in MLflow's artifact store
(``detectops.data.store``), models in MLflow runs and the registry, images in the registry by
digest. A step that runs again (a retry, a re-run) finds what it made before instead of
making it twice: versions are content-addressed, registration is idempotent by model hash,
images are tagged by version and code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.continuous import attempts
from detectops.errors import DataValidationError, DetectOpsError

log_ = logging.getLogger(__name__)

TRAINING_EXPERIMENT = "detectops-level1"
#: Registered-model tags that remember the model's newest dataset version (the next run's parent).
LATEST_VERSION_URI_TAG = "detectops.dataset.latest_uri"
LATEST_VERSION_SHA_TAG = "detectops.dataset.latest_sha256"
#: Model-version tags of models this pipeline trained (warm start needs both).
TRAINER_TAG = "detectops.trainer"
LABEL_MAP_TAG = "detectops.label_map"
TRAINER = "detectops.train"
PIPELINE_IMAGE_VARIABLE = "detectops_pipeline_image"
INGEST_KEY_TAG = "detectops.ingest_key"


#: Outcomes of a run that did not do its job (a gate rejection and "nothing to retrain" did).
FAILED_OUTCOMES = ("failed", "deploy failed")


def label_map_of(params: dict[str, Any]) -> dict[int, str]:
    return {int(k): str(v) for k, v in dict(params["label_map"]).items()}


def _label_map_key(label_map: dict[int, str]) -> str:
    return json.dumps({str(k): v for k, v in sorted(label_map.items())}, sort_keys=True)


def _client(tracking_uri: str):
    from detectops.evaluate.mlflow_log import connect

    return connect(tracking_uri)


def _versions_dir() -> Path:
    return settings.cache_dir() / "dataset-versions"


# ------------------------------------------------------------------------------ 1. collect


def collect_batches(events: list[dict[str, Any]], params: dict[str, Any], *, tracking_uri: str) -> dict[str, Any]:
    """Every batch this run ingests: the events' locations and the file drops, each once, in landing order."""
    from detectops.data import landing

    model = params["model_name"]
    mine = [e for e in events if (e.get("extra") or {}).get("model", model) == model]
    ignored = len(events) - len(mine)
    if params.get("ingest_new_batches", True):
        batches = landing.collect_batches(mine, landing_dir=settings.landing_dir(), allow_roots=landing.allowed_roots(),
                                          tracking_uri=tracking_uri)
    else:  # a staging run: the landing area belongs to production's runs
        print("ingest_new_batches is off: training on the current dataset version, the landing area is left alone")
        batches = []
    reasons = sorted({str((e.get("extra") or {}).get("reason", "")) for e in mine if (e.get("extra") or {}).get("reason")})
    # Drift events (the monitoring DAG) carry evidence, not data: the note names it.
    drift = [{k: e["extra"].get(k) for k in ("model_version", "drifted_features", "drift_share", "monitoring_run_id")}
             for e in mine if (e.get("extra") or {}).get("drifted_features") is not None]
    return {
        "model": model,
        "batches": [b.to_dict() for b in batches],
        "events": len(events),
        "ignored_events": ignored,
        "triggers": reasons,
        "drift": drift,
    }


# ------------------------------------------------------------------------------ 2. validate


def validate_batches(collected: dict[str, Any], params: dict[str, Any], *, tracking_uri: str,
                     context: dict[str, Any] | None = None, dag_run_id: str | None = None) -> dict[str, Any]:
    """GX per batch (training purpose), label-map check, quarantine, and skew against the current version."""
    from detectops.data import landing
    from detectops.quality import skew as skew_mod

    label_map = label_map_of(params)
    parent = _current_version_dir(params["model_name"], tracking_uri)
    accepted, refused, skews = [], [], []
    for batch in collected["batches"]:
        verdict = landing.validate_batch(batch["path"], label_map, context=context)
        if not verdict.accepted:
            where = landing.quarantine(batch["path"], verdict)
            landing.mark_ingested([batch], settings.landing_dir(), outcome="quarantined")
            refused.append({**batch, "reason": verdict.reason, "quarantined_at": str(where)})
            print(f"batch {batch['name']} refused: {verdict.reason} (quarantined at {where})")
            continue
        report = skew_mod.compute_skew(parent, batch["path"]) if parent else None
        if report is not None:
            print(f"skew of batch {batch['name']} against version {parent.name[:12]}:\n{report.to_markdown()}")
            skews.append({**report.to_dict(), "batch": batch["name"]})
        accepted.append(batch)
    max_skew = max((s["max_distance"] for s in skews), default=0.0)
    ingest_run_id = _log_ingest(tracking_uri, params["model_name"], accepted, refused, skews, dag_run_id)
    result = {"accepted": accepted, "refused": refused, "skew": skews, "max_skew": max_skew,
              "parent": parent.name if parent else None, "ingest_run_id": ingest_run_id}
    if max_skew > float(params["max_skew"]):
        raise DataValidationError(
            f"the new data is too far from the current dataset version: skew {max_skew:.3f} > max_skew "
            f"{params['max_skew']} ({', '.join(_worst_features(skews))}). Check the batch; if the shift is "
            "real and wanted, trigger again with a higher max_skew.")
    return result


def _worst_features(skews: list[dict[str, Any]]) -> list[str]:
    out = []
    for s in skews:
        for name, f in s.get("features", {}).items():
            if f.get("exceeded"):
                out.append(f"{s['batch']}: {name} {f['distance']:.3f}")
    return out or ["no single feature over its own threshold"]


def _log_ingest(tracking_uri: str, model: str, accepted: list, refused: list, skews: list, dag_run_id: str | None) -> str:
    """One MLflow run per ingest: the GX verdicts and skew of every batch (the model version's lineage points at it).

    Keyed by the DAG run and the batches' hashes, so a retried task finds its run instead of logging a second one.
    """
    import hashlib

    import mlflow

    from detectops.evaluate.mlflow_log import find_finished_run, get_or_create_experiment

    hashes = sorted(b["sha256"] for b in accepted + refused)
    key = hashlib.sha256(json.dumps({"dag_run_id": dag_run_id, "batches": hashes}).encode()).hexdigest()[:32]
    client = _client(tracking_uri)
    experiment_id = get_or_create_experiment(client, TRAINING_EXPERIMENT)
    existing = find_finished_run(client, experiment_id, INGEST_KEY_TAG, key)
    if existing:
        return existing
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"ingest {model}") as run:
        mlflow.set_tags({"detectops.step": "ingest", "detectops.model": model, "dag_run_id": dag_run_id or ""})
        mlflow.log_metrics({"batches_accepted": len(accepted), "batches_refused": len(refused),
                            "max_skew": max((s["max_distance"] for s in skews), default=0.0)})
        mlflow.log_dict({"accepted": accepted, "refused": refused, "skew": skews}, "ingest.json")
        mlflow.set_tag(INGEST_KEY_TAG, key)  # last: a run cut short is not found as done
        print(f"ingest logged to MLflow run {run.info.run_id}")
    return run.info.run_id


# ------------------------------------------------------------------------------ 3. version


def _registered_model_tags(name: str, tracking_uri: str) -> dict[str, str]:
    client = _client(tracking_uri)
    try:
        return dict(client.get_registered_model(name).tags or {})
    except Exception as exc:  # RESOURCE_DOES_NOT_EXIST: no version yet
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return {}
        raise


def _current_version_dir(model: str, tracking_uri: str) -> Path | None:
    """The newest dataset version of ``model`` on local disk (fetched from the store if needed)."""
    from detectops.data import store

    tags = _registered_model_tags(model, tracking_uri)
    uri, sha = tags.get(LATEST_VERSION_URI_TAG), tags.get(LATEST_VERSION_SHA_TAG)
    if not uri or not sha:
        return None
    local = _versions_dir() / sha
    if not local.is_dir():
        store.fetch_dir(uri, local, tracking_uri=tracking_uri)
    return local


def _champion(model: str, alias: str, tracking_uri: str) -> dict[str, Any] | None:
    from detectops import registry

    ref = registry.get_alias(model, alias, tracking_uri=tracking_uri)
    if ref is None:
        return None
    tags = registry.get_version_tags(model, ref.version, tracking_uri=tracking_uri)
    return {**ref.to_dict(), "tags": tags}


def version_dataset(validated: dict[str, Any], params: dict[str, Any], *, tracking_uri: str) -> dict[str, Any]:
    """The new dataset version (content-addressed, published), and whether to retrain on it."""
    from detectops.data import store, versioning

    model = params["model_name"]
    parent = _current_version_dir(model, tracking_uri)
    batches = [b["path"] for b in validated["accepted"]]
    if not batches and parent is None:
        why = (f"nothing to retrain: model {model!r} has no dataset yet and this run brought no accepted batch. "
               "Land a batch (file drop, POST /api/v2/assets/events or `detectops land`).")
        print(why)
        return {"sha256": None, "uri": None, "path": None, "parent": None, "counts": {}, "retrain": False,
                "why": why, "champion": None}
    version = versioning.build_version(parent, batches, _versions_dir()) if batches else versioning.DatasetVersion.load(parent)
    uri = store.publish_dir(version.path, kind="dataset", sha256=version.sha256, tracking_uri=tracking_uri)
    # Only now are the batches safe in a published version: a retry before this point collects them again.
    from detectops.data import landing

    landing.mark_ingested(validated["accepted"], settings.landing_dir(), version=version.sha256)
    _ensure_registered_model(model, tracking_uri)
    client = _client(tracking_uri)
    client.set_registered_model_tag(model, LATEST_VERSION_URI_TAG, uri)
    client.set_registered_model_tag(model, LATEST_VERSION_SHA_TAG, version.sha256)

    champion = _champion(model, params["champion_alias"], tracking_uri)
    trained_on = (champion or {}).get("tags", {}).get("dataset_sha256")
    unchanged = trained_on == version.sha256
    forced = bool(params.get("retrain_unchanged"))
    pinned = _pinned_pipeline_image(params)
    attempt = attempts.identity(dataset_sha256=version.sha256, params=params,
                                champion_version=champion and champion["version"], pipeline_image=pinned,
                                code_version="" if pinned else settings.code_version())
    repeated = None if unchanged or forced else attempts.find_rejected_attempt(model, attempt, tracking_uri=tracking_uri)
    retrain = (not unchanged and repeated is None) or forced
    if unchanged and not retrain:
        why = (f"nothing to retrain: dataset version {version.sha256[:12]} is the one champion v{champion['version']} "
               "was trained on (no new labelled data)")
    elif repeated is not None:
        why = attempts.skip_reason(model, repeated[0], repeated[1], version.sha256)
    else:
        why = f"dataset version {version.sha256[:12]} ({'unchanged, retrain asked' if unchanged else 'new data'})"
    print(why)
    counts = version.to_dict().get("counts", {})
    return {"sha256": version.sha256, "uri": uri, "path": str(version.path), "parent": validated.get("parent"),
            "counts": counts, "retrain": retrain, "why": why, "attempt": attempt,
            "repeats_rejected": repeated and repeated[0],
            "champion": champion and {k: champion[k] for k in ("name", "version")}}


def _ensure_registered_model(name: str, tracking_uri: str) -> None:
    client = _client(tracking_uri)
    try:
        client.create_registered_model(name, description="Trained by the DetectOps level-1 pipeline")
    except Exception as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise


# ------------------------------------------------------------------------------ 4. train


def pipeline_image(params: dict[str, Any], registry: dict[str, Any]) -> str:
    """The pipeline image training runs in: the Param, else the Variable level 2 manages, else this code's."""
    pinned = _pinned_pipeline_image(params)
    if pinned:
        return pinned
    from detectops.build.pipeline_image import ensure_pipeline_image

    ref = ensure_pipeline_image(registry=registry["registry"], base_image=registry.get("base_image"),
                                username=registry.get("username"), password=registry.get("password"),
                                docker_host=registry.get("docker_host"), log=print)
    return ref.pinned


def _pinned_pipeline_image(params: dict[str, Any]) -> str | None:
    """The pipeline image the run is pinned to (the Param, else level 2's Variable); None: build this code's."""
    if params.get("pipeline_image"):
        return params["pipeline_image"]
    from airflow.sdk import Variable

    return Variable.get(PIPELINE_IMAGE_VARIABLE, default=None) or None


def warm_start_source(model: str, params: dict[str, Any], tracking_uri: str) -> str | None:
    """``models:/<model>@<champion>`` when this trainer made the champion with the same label map."""
    if not params.get("warm_start", True):
        print("no warm start: the run asked to train from scratch")
        return None
    champion = _champion(model, params["champion_alias"], tracking_uri)
    if champion is None:
        return None
    tags = champion["tags"]
    if tags.get(TRAINER_TAG) != TRAINER:
        print(f"no warm start: champion v{champion['version']} was not trained by this pipeline")
        return None
    if tags.get(LABEL_MAP_TAG) != _label_map_key(label_map_of(params)):
        print(f"no warm start: champion v{champion['version']} has another label map")
        return None
    return f"models:/{model}@{params['champion_alias']}"


def training_plan(version: dict[str, Any], params: dict[str, Any], *, tracking_uri: str,
                  registry: dict[str, Any], run_key: str, kube_config: str | None) -> dict[str, Any]:
    """Image and arguments of the training pod (MLflow as pods reach it); its namespace exists after this."""
    from detectops.pipeline import prepare_namespace
    from detectops.platform_net import pod_reachable_url

    prepare_namespace(params["namespace"], kube_config=kube_config)
    image = pipeline_image(params, registry)
    warm = warm_start_source(params["model_name"], params, tracking_uri)
    config = params["train_config"]
    plan = {
        "image": image,
        "namespace": params["namespace"],
        "dataset": version["uri"],
        "label_map": _label_map_key(label_map_of(params)),
        "config": config if isinstance(config, str) else json.dumps(config),
        "tracking_uri": pod_reachable_url(tracking_uri),
        "experiment": TRAINING_EXPERIMENT,
        "run_key": run_key,
        "run_name": f"train {params['model_name']} on {version['sha256'][:12]}",
        "warm_start": warm or "",
    }
    print(f"training in {image}: {json.dumps(plan, indent=1)}")
    return plan


# ------------------------------------------------------------------------------ 5. evaluate


def _download(uri: str, name: str, tracking_uri: str) -> Path:
    from detectops.registry.models import download_saved_model

    dst = settings.work_dir() / "models" / name
    return download_saved_model(uri, dst, tracking_uri=tracking_uri)


def evaluate(trained: dict[str, Any], version: dict[str, Any], params: dict[str, Any], *,
             tracking_uri: str, dag_run_id: str | None) -> dict[str, Any]:
    """Candidate and champion on the same test split of the new version, with slices; logged to MLflow."""
    from detectops.data import versioning
    from detectops.data.sampling import sample_split
    from detectops.evaluate.compare import evaluate_pair, log_pair

    dataset = versioning.DatasetVersion.load(_local_version(version, tracking_uri))
    candidate_dir = _download(trained["model_uri"], f"candidate-{trained['run_id']}", tracking_uri)
    champion = _champion(params["model_name"], params["champion_alias"], tracking_uri)
    champion_dir = (_download(champion["model_uri"], f"champion-{champion['name']}-{champion['version']}", tracking_uri)
                    if champion else None)
    out = settings.work_dir() / "evaluations" / f"{trained['run_id']}"
    batches = dataset.image_batches("test")
    budget = int(params.get("eval_max_images") or 0)
    test_dir = sample_split(dataset.split_dir("test"), budget, settings.work_dir() / "evalsets" / f"{version['sha256'][:16]}-{budget}",
                            strata=batches)
    pair = evaluate_pair(candidate_dir, champion_dir, test_dir, image_batches=batches, output_dir=out)
    if test_dir != dataset.split_dir("test"):
        pair["test_split"]["sample_of"] = len(batches)
        print(f"evaluated on a stratified sample of {budget} of the test split's {len(batches)} images")
    run_id = log_pair(pair, experiment=TRAINING_EXPERIMENT, dag_run_id=dag_run_id, tracking_uri=tracking_uri)
    # The version is a dataset input of the runs that used it: training, and this evaluation.
    _log_version_input(trained["run_id"], version["uri"], "training", tracking_uri)
    _log_version_input(run_id, version["uri"], "evaluation", tracking_uri)
    cand = pair["candidate"]["metrics"]
    champ = (pair.get("champion") or {}).get("metrics")
    print(f"candidate AP {cand.get('AP', 0):.3f} AP50 {cand.get('AP50', 0):.3f}"
          + (f" | champion v{champion['version']} AP {champ.get('AP', 0):.3f} AP50 {champ.get('AP50', 0):.3f}" if champ else " | no champion"))
    return {"pair": pair, "run_id": run_id, "candidate_dir": str(candidate_dir),
            "champion": champion and {k: champion[k] for k in ("name", "version")}}


def _local_version(version: dict[str, Any], tracking_uri: str) -> Path:
    """The dataset version's directory on this worker (fetched from the store if another worker made it)."""
    local = Path(version["path"])
    if not local.is_dir():
        from detectops.data import store

        store.fetch_dir(version["uri"], local, tracking_uri=tracking_uri)
    return local


def _log_version_input(run_id: str, uri: str, context: str, tracking_uri: str) -> None:
    import mlflow

    from detectops.data.store import log_dataset_input

    client = _client(tracking_uri)
    if any(uri in (i.dataset.source or "") for i in client.get_run(run_id).inputs.dataset_inputs):
        return  # a retried task logs it once
    status = client.get_run(run_id).info.status
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        log_dataset_input(uri, context=context, tracking_uri=tracking_uri)
    client.set_terminated(run_id, status=status if status in ("FINISHED", "FAILED", "KILLED") else "FINISHED")


# ------------------------------------------------------------------------------ 6. register, build, infra, gate


def register(trained: dict[str, Any], version: dict[str, Any], evaluation: dict[str, Any], params: dict[str, Any], *,
             tracking_uri: str, dag_run_id: str | None, plan: dict[str, Any] | None = None,
             validated: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register the candidate (always, idempotent by model hash) with its lineage; no alias yet.

    Lineage: the DAG run, the dataset version, the code, the pipeline image it trained in (by
    digest), the training and evaluation runs, and the data checks of this run's batches.
    """
    from detectops import registry
    from detectops.models import fetch_model

    model = fetch_model(evaluation["candidate_dir"])
    tags = {
        TRAINER_TAG: TRAINER,
        LABEL_MAP_TAG: _label_map_key(label_map_of(params)),
        "training_run_id": trained["run_id"],
        "dataset_uri": version["uri"],
        "warm_started_from": trained.get("warm_started_from") or "",
        "pipeline_image": (plan or {}).get("image", ""),
        "evaluation_run_id": evaluation.get("run_id", ""),
        # what identifies this attempt, so that a run that would only repeat it is skipped (attempts.py)
        **{k: v for k, v in (version.get("attempt") or {}).items() if k.startswith("detectops.")},
    }
    if validated is not None:
        tags.update({
            "gx.batches_accepted": len(validated.get("accepted", [])),
            "gx.batches_refused": len(validated.get("refused", [])),
            "gx.results": f"runs:/{validated['ingest_run_id']}/ingest.json" if validated.get("ingest_run_id") else "",
            "skew.max": f"{validated.get('max_skew', 0.0):.4f}",
        })
    ref = registry.register_model(model, trained["run_id"], params["model_name"], tags,
                                  dataset_sha256=version["sha256"], dag_run_id=dag_run_id, tracking_uri=tracking_uri)
    print(f"registered {ref.name} v{ref.version} from training run {trained['run_id']}")
    _store_reference(ref, version, evaluation, tracking_uri, float(params.get("score_threshold", 0.3)))
    return {**ref.to_dict(), "model_path": model.path}


def _store_reference(ref: Any, version: dict[str, Any], evaluation: dict[str, Any], tracking_uri: str,
                     min_score: float) -> None:
    """The version's reference statistics: its training and test images, and its own detections on the test split."""
    from detectops.data import versioning
    from detectops.pipeline import store_reference_statistics

    dataset = versioning.DatasetVersion.load(_local_version(version, tracking_uri))
    splits = {"train": dataset.split_dir("train"), "test": dataset.split_dir("test")}
    detections = evaluation["pair"]["candidate"]["artifacts"]["coco_results_json"]
    if not Path(detections).is_file():  # evaluated on another worker; log_pair stored it under candidate/
        detections = f"runs:/{evaluation['run_id']}/candidate/{Path(detections).name}"
    store_reference_statistics(ref.name, ref.version, splits, {"run_id": evaluation["run_id"], "detections": detections},
                               tracking_uri=tracking_uri, evaluated_split="test", min_score=min_score)


def build_image(registered: dict[str, Any], evaluation: dict[str, Any], plan: dict[str, Any], *,
                registry: dict[str, Any], tracking_uri: str) -> dict[str, Any]:
    """The candidate's serving image, built once: infra validation runs it, promotion deploys the same digest.

    It is the pipeline image the candidate trained in plus the model: a level-2 commit's code
    serves what that code trained.
    """
    from detectops.pipeline import build_and_push

    dataset = {"sha256": evaluation["pair"]["test_split"].get("sha256") or ""}
    return build_and_push({"path": registered["model_path"]}, dataset, registered,
                          registry=registry, tracking_uri=tracking_uri, pipeline_image=plan["image"])


def infra_validate(image: dict[str, Any], registered: dict[str, Any], params: dict[str, Any], *,
                   kube_config: str | None) -> dict[str, Any]:
    from detectops.continuous.infra_validation import validate_image
    from detectops.deploy import connect
    from detectops.pipeline import prepare_namespace

    prepare_namespace(params["namespace"], kube_config=kube_config)
    result = validate_image(connect(kube_config), image=image["image"], namespace=params["namespace"],
                            model_name=registered["name"], version=registered["version"], log=print)
    print(f"infra validation {'passed' if result.passed else 'FAILED'}: {result.detail}")
    return result.to_dict()


def gate(evaluation: dict[str, Any], infra: dict[str, Any], registered: dict[str, Any], params: dict[str, Any], *,
         tracking_uri: str) -> dict[str, Any]:
    """Judge the candidate; record the verdict on its version; ``challenger`` only if it passed."""
    from detectops import registry
    from detectops.gate import GateThresholds, judge

    verdict = judge(evaluation["pair"], GateThresholds.from_params(params), contract_ok=True,
                    infra_ok=bool(infra.get("passed")), infra_detail=infra.get("detail", ""))
    for key, value in verdict.tags().items():
        registry.set_version_tag(registered["name"], registered["version"], key, value, tracking_uri=tracking_uri)
    if verdict.passed:
        registry.set_alias(registered["name"], params["candidate_alias"], registered["version"], tracking_uri=tracking_uri)
        print(f"gate passed: v{registered['version']} is {params['candidate_alias']}. {verdict.summary()}")
    else:
        registry.reject(registered["name"], registered["version"], verdict.summary(), stage="gate",
                        tracking_uri=tracking_uri)
        print(verdict.summary())
    return verdict.to_dict()


def deploy_spec(verdict: dict[str, Any], image: dict[str, Any], registered: dict[str, Any],
                params: dict[str, Any]) -> dict[str, Any] | None:
    if not verdict.get("passed"):
        return None
    from detectops.deploy.spec import DeploySpec

    return DeploySpec(
        model_name=registered["name"], model_version=str(registered["version"]), image=image["image"],
        namespace=params["namespace"], deployment=params["deployment"], replicas=int(params["replicas"]),
        score_threshold=float(params["score_threshold"]),
        # The smoke photo (the astronaut) holds no shapes: the smoke test checks the contract and
        # readiness through the Service; the gate judged the detections.
        min_detections=0,
    ).to_dict()


# ------------------------------------------------------------------------------ 8. report


def run_note(params: dict[str, Any], *, collected=None, validated=None, version=None, evaluation=None,
             verdict=None, deployed=None) -> tuple[str, str]:
    """(outcome, note in Markdown) of a run from what its steps returned (None: did not run or failed)."""
    lines = []
    if collected:
        lines.append(f"- batches: {len(collected.get('batches', []))} from {collected.get('events', 0)} event(s)")
        for d in collected.get("drift") or []:
            lines.append(f"- drift detected on v{d.get('model_version')} (share {d.get('drift_share')}): "
                         f"{', '.join(d.get('drifted_features') or [])} (monitoring run {d.get('monitoring_run_id')})")
    if validated:
        for r in validated.get("refused", []):
            lines.append(f"- refused batch `{r.get('name')}`: {r.get('reason')}")
        if validated.get("skew"):
            lines.append(f"- largest skew against the current version: {validated.get('max_skew', 0):.3f}")
    if version:
        lines.append(f"- {version.get('why')}")
    if evaluation:
        pair = evaluation.get("pair", {})
        cand = pair.get("candidate", {}).get("metrics", {})
        champ = (pair.get("champion") or {}).get("metrics")
        lines.append(f"- candidate AP {cand.get('AP', 0):.3f}, AP50 {cand.get('AP50', 0):.3f}"
                     + (f"; champion AP {champ.get('AP', 0):.3f}, AP50 {champ.get('AP50', 0):.3f}" if champ else "; no champion")
                     + f" (MLflow run {evaluation.get('run_id')})")
    if version and not version.get("retrain"):
        outcome = "nothing to retrain"
        if collected and collected.get("drift"):
            features = sorted({f for d in collected["drift"] for f in d.get("drifted_features") or []})
            since = (f"the data since the champion gave v{version['repeats_rejected']}, which the gate rejected"
                     if version.get("repeats_rejected") else "no batch has landed since the champion was trained")
            lines.append(f"- new labelled data is needed: traffic drifted ({', '.join(features)}) but {since}; "
                         "land labelled images of the new domain")
    elif verdict and not verdict.get("passed"):
        outcome = "not promoted"
        lines.append(f"- gate: {', '.join(verdict.get('reasons', []))}")
    elif verdict and verdict.get("passed") and deployed:
        outcome = "promoted"
        lines.append(f"- {params.get('promote_alias') or params['champion_alias']} is now "
                     f"v{deployed.get('model_version')}, serving in "
                     f"{params['namespace']}/{params['deployment']}")
    elif verdict and verdict.get("passed"):
        outcome = "deploy failed"
        lines.append("- the gate passed but the deploy or the smoke test failed: the champion is unchanged")
    else:
        outcome = "failed"
        lines.append("- a step failed before the gate: see the failed task's log")
    return outcome, f"**{params['model_name']}: {outcome}**\n" + "\n".join(lines)


def report(dag_id: str, run_id: str, params: dict[str, Any], **results: Any) -> dict[str, Any]:
    from detectops.airflow_api import from_connection

    outcome, note = run_note(params, **results)
    print(note)
    try:
        from_connection().set_run_note(dag_id, run_id, note)
    except Exception as exc:  # the note is a convenience; the XCom and the log carry the same
        print(f"could not set the run's note through the REST API: {exc}")
    if outcome in FAILED_OUTCOMES:
        # This task runs whatever happened (to write the note); it fails the run when a step did.
        raise DetectOpsError(f"{params['model_name']}: {outcome}. " + note.split("\n", 1)[-1].replace("\n", " "))
    return {"outcome": outcome, "note": note}

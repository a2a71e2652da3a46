"""The level-2 DAG's steps, as plain functions (no Airflow): each takes what it needs, returns a dict.

1. ``checkout`` / ``build_images``: the commit, fetched from its repository, and its two images
   (``detectops/pipeline:<sha>``, ``detectops/pipeline-test:<sha>``), tagged by the full SHA and
   never pushed over (``detectops.build.commit``).
2. The tests run in a pod of the test image (the DAG's KubernetesPodOperator; ``test_namespace``).
3. ``staging_conf`` -> level 1 runs in staging with the commit's pipeline image; ``staged_version``
   then checks what it produced: the version under ``staging``, trained in that very run, in that
   image, with a serving image built on it.
4. ``canary_plan`` / ``start``: the staged version as a canary beside the stable Deployment,
   behind the one production Service.
5. ``analyse``: bounded load through the production NodePort while Prometheus windows judge it.
6. ``route``: promote, ask a person, or roll back.
7. ``detectops.cicd.release``: promote or roll back, and record it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detectops import settings
from detectops.errors import DeployError, PromotionError

#: The alias a staging run moves (the gate still compares with ``champion``).
STAGING_ALIAS = "staging"
STAGING_PREVIOUS_ALIAS = "staging-previous"
STAGING_CANDIDATE_ALIAS = "staging-candidate"
#: Where the test pods run.
TEST_NAMESPACE = "detectops-ci"


def staging_run_id(run_id: str) -> str:
    """The level-1 run id of a level-2 run's staging: one per level-2 run, so a retry finds it again."""
    return f"staging__{run_id}"[:250]


# ------------------------------------------------------------------------------ 1. commit -> images


def checkout(params: dict[str, Any], *, work_root: Path | None = None) -> dict[str, Any]:
    """A clean checkout of ``params['commit_sha']`` from ``params['repo']`` (the SHA is checked there)."""
    from detectops.build.commit import checkout_commit
    from detectops.errors import BuildError

    repo = (params.get("repo") or "").strip()
    if not repo:
        raise BuildError("no repo: pass the git URL the commit can be fetched from (Param `repo`, or set "
                         "DETECTOPS_REPO_URL for the default)")
    root = work_root or settings.work_dir() / "level2"
    sha = (params.get("commit_sha") or "").strip().lower()
    return checkout_commit(repo, sha, root / sha)


def build_images(checked_out: dict[str, Any], *, registry: dict[str, Any]) -> dict[str, Any]:
    from detectops.build.commit import build_commit_images

    return build_commit_images(Path(checked_out["dir"]), checked_out["sha"], registry=registry["registry"],
                               base_image=registry.get("base_image"), username=registry.get("username"),
                               password=registry.get("password"), docker_host=registry.get("docker_host"), log=print)


def test_plan(images: dict[str, Any], params: dict[str, Any], *, kube_config: str | None) -> dict[str, Any]:
    """Image, namespace and shell command of the test pod; the namespace exists after this.

    The pod always exits 0 once pytest ran and reports pytest's exit code and summary as its XCom:
    a failing suite is a verdict on the commit (``check_tests`` fails at once), while a pod that
    fails (evicted, image not pulled) is an infrastructure fault that Airflow retries.
    """
    import shlex

    from detectops.deploy import namespace_manifest
    from detectops.deploy.kube import apply, connect

    apply(connect(kube_config), namespace_manifest(TEST_NAMESPACE))
    pytest = shlex.join(["python", "-m", "pytest", *shlex.split(params["test_args"])])
    command = (f"{{ {pytest}; echo $? > /tmp/pytest.rc; }} 2>&1 | tee /tmp/pytest.log; "
               "mkdir -p /airflow/xcom; "
               """printf '{"exit_code": %s, "summary": "%s"}' "$(cat /tmp/pytest.rc)" """
               """"$(tail -n 1 /tmp/pytest.log | tr -d '"\\\\' | tr -s '=' | sed 's/^= //; s/ =$//')" """
               "> /airflow/xcom/return.json")
    return {"image": images["test_image"], "namespace": TEST_NAMESPACE, "command": command}


def check_tests(result: dict[str, Any] | None) -> dict[str, Any]:
    """Pass when pytest passed in the test pod; otherwise stop the release with pytest's own summary."""
    from detectops.errors import DetectOpsError

    if not result or "exit_code" not in result:
        raise DetectOpsError(f"the test pod reported no result ({result!r}): see the tests task's log")
    if int(result["exit_code"]) != 0:
        raise DetectOpsError(f"the commit's tests failed (pytest exit code {result['exit_code']}): "
                             f"{result.get('summary')}. Nothing was staged or deployed.")
    print(f"tests passed: {result.get('summary')}")
    return result


# ------------------------------------------------------------------------------ 3. staging


def staging_conf(params: dict[str, Any], images: dict[str, Any]) -> dict[str, Any]:
    """The level-1 run's conf: retrain on the current data in staging with the commit's pipeline image."""
    return {
        "model_name": params["model_name"],
        "namespace": params["staging_namespace"],
        "deployment": params["deployment"],
        "pipeline_image": images["pipeline_image"],
        "champion_alias": "champion",
        "promote_alias": STAGING_ALIAS,
        "previous_alias": STAGING_PREVIOUS_ALIAS,
        "candidate_alias": STAGING_CANDIDATE_ALIAS,
        "ingest_new_batches": False,
        "retrain_unchanged": True,
        "map_margin": float(params["staging_map_margin"]),
        "train_config": params["staging_train_config"],
    }


def staged_version(params: dict[str, Any], images: dict[str, Any], *, staging_run: str,
                   tracking_uri: str) -> dict[str, Any]:
    """The version staging approved: under ``staging``, from run ``staging_run``, trained in the commit's image."""
    from detectops import registry

    model = params["model_name"]
    ref = registry.get_alias(model, STAGING_ALIAS, tracking_uri=tracking_uri)
    if ref is None:
        raise PromotionError(f"staging run {staging_run} succeeded but {model} has no {STAGING_ALIAS!r} alias")
    tags = registry.get_version_tags(model, ref.version, tracking_uri=tracking_uri)
    problems = []
    if tags.get("dag_run_id") != staging_run:
        problems.append(f"v{ref.version} comes from run {tags.get('dag_run_id')!r}, not {staging_run!r}")
    if tags.get("pipeline_image") != images["pipeline_image"]:
        problems.append(f"v{ref.version} trained in {tags.get('pipeline_image')!r}, not {images['pipeline_image']!r}")
    if not tags.get("image"):
        problems.append(f"v{ref.version} has no serving image recorded")
    if problems:
        raise PromotionError("the staged version is not this commit's: " + "; ".join(problems))
    champion = registry.get_alias(model, "champion", tracking_uri=tracking_uri)
    print(f"staging approved {model} v{ref.version} ({tags['image']}); champion is "
          f"{'v' + champion.version if champion else 'none'}")
    return {"model_name": model, "model_version": str(ref.version), "image": tags["image"],
            "training_run_id": tags.get("training_run_id"), "evaluation_run_id": tags.get("evaluation_run_id"),
            "gate": {k: v for k, v in tags.items() if k.startswith("gate.")},
            "champion_version": champion.version if champion else None, "staging_run": staging_run}


# ------------------------------------------------------------------------------ 4. canary


def stable_spec(params: dict[str, Any], *, kube: Any) -> dict[str, Any]:
    """The production stable track as it serves now (read from its Deployment), as a ``DeploySpec`` dict."""
    from kubernetes.client.rest import ApiException

    from detectops.deploy.manifests import SPEC_ANNOTATION
    from detectops.deploy.spec import DeploySpec

    namespace, name = params["namespace"], params["deployment"]
    try:
        dep = kube.apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise DeployError(f"no stable Deployment {namespace}/{name}: a canary joins a serving model. Deploy it "
                              "first (level 1 promotes a champion there), then run level 2 again") from exc
        raise
    notes = dep.metadata.annotations or {}
    if dep.metadata.labels.get("detectops.io/track", "stable") != "stable":
        raise DeployError(f"{namespace}/{name} is not a stable track")
    if notes.get(SPEC_ANNOTATION):  # exactly what was deployed
        return DeploySpec.from_json(notes[SPEC_ANNOTATION]).with_changes(replicas=int(dep.spec.replicas or 1)).to_dict()
    # Deployed before the spec was recorded on the Deployment: its recorded version and image.
    return DeploySpec(model_name=notes.get("detectops.io/model-name", params["model_name"]),
                      model_version=notes["detectops.io/model-version"], image=notes["detectops.io/image"],
                      namespace=namespace, deployment=name, replicas=int(dep.spec.replicas or 1),
                      min_detections=0).to_dict()


def canary_plan(params: dict[str, Any], staged: dict[str, Any], *, kube: Any) -> dict[str, Any]:
    """``{stable, canary}`` specs: the staged version's image as a canary behind production's Service."""
    from detectops.deploy.canary import canary_spec

    stable = stable_spec(params, kube=kube)
    if stable["model_name"] != staged["model_name"]:
        raise DeployError(f"{params['namespace']}/{params['deployment']} serves {stable['model_name']}, "
                          f"not {staged['model_name']}")
    canary = canary_spec(stable, image=staged["image"], model_version=staged["model_version"],
                         replicas=int(params["canary_replicas"]))
    print(f"canary: {canary.model_name} v{canary.model_version} ({canary.image}) beside stable "
          f"v{stable['model_version']} ({stable['image']}), {canary.replicas} : {stable['replicas']} replicas")
    return {"stable": stable, "canary": canary.to_dict(), "model_name": canary.model_name,
            "model_version": canary.model_version}


def analyse(plan: dict[str, Any], params: dict[str, Any], *, prometheus_url: str, kube: Any) -> dict[str, Any]:
    from detectops.cicd.params import thresholds_of
    from detectops.deploy.canary import analyse_canary

    load = {"rate_per_s": float(params["load_rate_per_s"]), "concurrency": int(params["load_concurrency"])}
    return analyse_canary(plan["canary"], thresholds=thresholds_of(params), load=load,
                          prometheus_url=prometheus_url, kube=kube, log=print)


def route(decision: dict[str, Any], params: dict[str, Any]) -> str | None:
    """The next task: ``approval`` or ``promote`` for a canary that passed, none (roll back) otherwise."""
    if decision.get("decision") != "promote":
        print(f"the canary analysis decided {decision.get('decision')}: {decision.get('reason')}")
        return None
    return "approval" if params.get("require_approval") else "promote"


def approval_body(plan: dict[str, Any], decision: dict[str, Any], checked_out: dict[str, Any]) -> str:
    """Markdown the approver reads: what would be released and what the canary showed."""
    rows = [f"| {r['index']} | {r['verdict']} | {r['stable'].get('requests')} / {r['canary'].get('requests')} | "
            f"{r['stable'].get('p99_s')} / {r['canary'].get('p99_s')} | {r['canary'].get('success_rate')} |"
            for r in decision.get("windows", [])]
    return "\n".join([
        f"**Commit** `{checked_out['sha'][:12]}` {checked_out.get('subject', '')}",
        f"**Canary** {plan['model_name']} v{plan['model_version']} (`{plan['canary']['image']}`) beside stable "
        f"v{plan['stable']['model_version']}.",
        f"**Analysis:** {decision.get('decision')}: {decision.get('reason')}", "",
        "| window | verdict | requests stable / canary | p99 s stable / canary | canary success |",
        "|---|---|---|---|---|", *rows, "",
        "Approve: stable takes the canary's image, `champion` moves, level 1's pipeline image switches. "
        "Reject: the canary is removed and nothing changes.",
    ])

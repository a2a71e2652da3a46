"""The level-0 DAG end to end, into the real cluster, under ``airflow dags test``.

Real MLflow server, real Docker engine and registry, real Kubernetes (``scripts/infra/up.sh``):
the run validates, evaluates and registers CenterNet, builds and pushes the serving image, and
goes through the shared deployment path (``detectops.dagkit.deploy_group``): the model's Lease,
the deployer as an ordinary KubernetesPodOperator pod (no host network), the smoke test from
outside through the Service's NodePort, then ``champion`` moves. Then this test itself sends
skimage's astronaut to the deployed Service on 127.0.0.1:<nodePort> and expects a ``person``.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.test_image import infra_env
from tests.support.airflow import airflow_env, dags_test, migrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "detectops_level0_manual"


@pytest.fixture(scope="module")
def infra():
    return infra_env()


@pytest.fixture(scope="module")
def namespace(infra):
    from detectops.deploy import connect

    ns = f"detectops-e2e-{uuid.uuid4().hex[:6]}"
    yield ns
    connect(infra["KUBECONFIG"]).core.delete_namespace(ns)


def test_level0_deploys_into_the_cluster(tmp_path_factory, mlflow_server, infra, namespace):
    import mlflow

    from detectops.deploy import DeploySpec, connect, smoke_test
    from detectops.deploy.lock import status

    registry = infra["DETECTOPS_REGISTRY"]
    env = airflow_env(
        tmp_path_factory.mktemp("airflow_home"),
        {
            "mlflow_default": mlflow_server,
            "detectops_registry": {
                "conn_type": "generic", "host": registry.split(":")[0], "port": int(registry.split(":")[1]),
                "extra": {"docker_host": infra["DOCKER_HOST"], "repository": "detectops/detector",
                          "base_image": infra["DETECTOPS_BASE_IMAGE"]},
            },
            "kubernetes_default": {
                "conn_type": "kubernetes",
                "extra": {"kube_config_path": infra["KUBECONFIG"], "namespace": namespace,
                          "xcom_sidecar_container_image": infra["DETECTOPS_BASE_IMAGE"]},
            },
        },
        extra={"DETECTOPS_WORK": str(tmp_path_factory.mktemp("work"))},
    )
    migrate(env)

    run = dags_test(env, DAG_ID, {"deploy": True, "namespace": namespace, "model_name": "detector-deploy-e2e"})
    assert run.succeeded, run.output[-8000:]

    # The registry records the image; the cluster runs exactly that digest; champion moved after the smoke test.
    client = mlflow.MlflowClient(mlflow_server)
    version = client.get_model_version_by_alias("detector-deploy-e2e", "champion")
    digest = version.tags["image_digest"]
    assert digest.startswith("sha256:")
    assert version.tags.get("champion.promoted_at"), "champion was not moved by deploy.promote"
    kube = connect(infra["KUBECONFIG"])
    deployment = kube.apps.read_namespaced_deployment("detector", namespace)
    assert deployment.status.ready_replicas == 1
    assert deployment.spec.template.spec.containers[0].image.endswith("@" + digest)
    cluster_ip = kube.core.read_namespaced_service("detector", namespace).spec.cluster_ip
    assert f"smoke: http://{cluster_ip}:8080/readyz 200" in run.output  # the deployer pod went through the Service

    # The model's deploy lock was released by the group's teardown.
    assert status(kube, "detector-deploy-e2e").holder is None

    # A real client, through the Service's NodePort on loopback: the astronaut is a person.
    spec = DeploySpec(model_name="detector-deploy-e2e", model_version=version.version, image=f"x@{digest}",
                      namespace=namespace, expect_label="person")
    result = smoke_test(kube, spec, via="nodeport")
    assert "person" in result.labels and result.targets[0].startswith("http://127.0.0.1:")

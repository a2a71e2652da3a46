"""MLflow Model Registry: detector versions with lineage tags and ``champion``/``challenger`` aliases.

    ref = register_model(model_ref, run_id, "detector", dag_run_id=...)   # idempotent by model sha256
    set_alias("detector", CHAMPION, ref.version)
    download_saved_model("models:/detector@champion", dst)                # -> SavedModel dir

Connecting checks the server's /health first: an unreachable MLflow raises
``ServiceUnavailableError`` within seconds, naming the URI and how to start a server.
"""

from detectops.registry.models import (
    CHALLENGER,
    CHAMPION,
    RegisteredModelRef,
    delete_alias,
    download_saved_model,
    find_version_by_sha,
    get_alias,
    get_version_tags,
    log_pyfunc_model,
    record_image,
    register_model,
    set_alias,
    set_version_tag,
)

__all__ = [
    "CHALLENGER", "CHAMPION", "RegisteredModelRef", "delete_alias", "download_saved_model", "find_version_by_sha",
    "get_alias", "get_version_tags", "log_pyfunc_model", "record_image", "register_model", "set_alias", "set_version_tag",
]

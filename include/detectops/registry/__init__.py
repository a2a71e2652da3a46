"""MLflow Model Registry: detector versions with lineage tags and ``champion``/``challenger``/``previous`` aliases.

    ref = register_model(model_ref, run_id, "detector", dag_run_id=...)   # idempotent by model sha256; moves no alias
    promote("detector", ref.version)      # only once it serves and passed its smoke test; old champion -> previous
    reject("detector", "8", "mAP below the champion's", stage="gate")
    rollback("detector", from_version=ref.version)                         # champion -> previous
    download_saved_model("models:/detector@champion", dst)                # -> SavedModel dir

Connecting checks the server's /health first: an unreachable MLflow raises
``ServiceUnavailableError`` within seconds, naming the URI and how to start a server.
"""

from detectops.registry.aliases import (
    CHALLENGER, CHAMPION, PREVIOUS, AliasMove, promote, reject, rollback, rollback_target,
)
from detectops.registry.models import (
    RegisteredModelRef,
    all_version_tags,
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
    "CHALLENGER", "CHAMPION", "PREVIOUS", "AliasMove", "RegisteredModelRef", "promote", "reject", "rollback",
    "rollback_target", "all_version_tags", "delete_alias", "download_saved_model", "find_version_by_sha",
    "get_alias", "get_version_tags", "log_pyfunc_model", "record_image", "register_model", "set_alias", "set_version_tag",
]

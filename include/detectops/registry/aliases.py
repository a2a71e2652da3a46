"""Promotion, rejection and rollback: the only code that moves ``champion``.

Registration never moves an alias. ``champion`` moves only through ``promote``, after the new
version has been built, deployed and smoke-tested, so the registry and the cluster agree:

    promote("detector", "7")                 # champion -> 7; previous -> the old champion
    reject("detector", "8", "mAP 0.31 < 0.40", stage="gate")   # why, on version 8; champion untouched
    rollback("detector", from_version="7")   # champion -> previous; 7 is tagged rejected

History lives in tags on the versions: a promoted version records the champion it replaced
(``<alias>.promoted_from``). After a rollback ``previous`` points at the champion *before*
the restored one (or is removed if there was none), never at the version rolled back from: a
second rollback goes further back instead of reinstating the version just found bad.

Every move is idempotent, so a retried task changes nothing the second time: promoting the
current champion is a no-op, and ``rollback(from_version=V)`` after V was already rolled back
returns the earlier result. Tags are written before the alias moves, so a crash in between
leaves a move that a retry completes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from detectops.errors import PromotionError
from detectops.evaluate.mlflow_log import connect

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
#: MLflow keeps tag values up to 8000 characters; a reason is cut well before that.
_MAX_REASON = 4000


@dataclass(frozen=True)
class AliasMove:
    """The outcome of a promotion or rollback (crosses XCom as ``to_dict()``).

    ``version`` is where ``alias`` points now, ``replaced`` where it pointed before,
    ``previous`` where ``previous_alias`` points now; ``image`` is the serving image recorded on
    ``version`` (``repository@sha256:...``), the one to deploy; ``changed`` is False for a no-op.
    """

    name: str
    alias: str
    version: str
    replaced: str | None
    previous: str | None
    image: str | None
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _version_tags(client: Any, name: str, version: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_model_version(name, version).tags)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise PromotionError(
                f"model {name} has no version {version}: check the name and version in the MLflow "
                "registry (Models tab) and try again."
            ) from exc
        raise


def _nothing_to_roll_back(name: str, alias: str, previous_alias: str, current: str | None) -> PromotionError:
    return PromotionError(
        f"{name} has no '{previous_alias}' version to roll back to ({alias} is "
        f"{'version ' + current if current else 'unset'}). Promote a known good version instead: "
        f"`detectops promote {name} VERSION`."
    )


def _point(client: Any, name: str, alias: str, version: str | None) -> None:
    """Point ``alias`` at ``version``, or remove it when ``version`` is None."""
    if version is not None:
        client.set_registered_model_alias(name, alias, version)
    elif _alias_version(client, name, alias) is not None:
        client.delete_registered_model_alias(name, alias)


def _move(client: Any, name: str, alias: str, previous_alias: str, *, version: str, replaced: str | None,
          previous: str | None, changed: bool) -> AliasMove:
    return AliasMove(name=name, alias=alias, version=version, replaced=replaced, previous=previous,
                     image=_version_tags(client, name, version).get("image"), changed=changed)


def promote(name: str, version: str | int, *, alias: str = CHAMPION, previous_alias: str = PREVIOUS,
            tracking_uri: str | None = None) -> AliasMove:
    """Point ``alias`` at ``version``; the version it leaves keeps ``previous_alias``.

    Call it only once ``version`` serves and passed its smoke test. Promoting the version that
    ``alias`` already names changes nothing (``changed=False``).
    """
    client = connect(tracking_uri)
    version = str(version)
    _version_tags(client, name, version)  # a clear error for a version that does not exist
    current = _alias_version(client, name, alias)
    if current == version:
        return _move(client, name, alias, previous_alias, version=version, replaced=current,
                     previous=_alias_version(client, name, previous_alias), changed=False)
    client.set_model_version_tag(name, version, f"{alias}.promoted_from", current or "")
    client.set_model_version_tag(name, version, f"{alias}.promoted_at", _now())
    if current is not None:
        client.set_registered_model_alias(name, previous_alias, current)
    client.set_registered_model_alias(name, alias, version)
    return _move(client, name, alias, previous_alias, version=version, replaced=current,
                 previous=current or _alias_version(client, name, previous_alias), changed=True)


def reject(name: str, version: str | int, reason: str, *, stage: str, drop_aliases: tuple[str, ...] = (CHALLENGER,),
           tracking_uri: str | None = None) -> None:
    """Record on ``version`` why it must not serve (``rejected_stage``: gate, smoke, canary, rollback...).

    Leaves ``champion`` and ``previous`` alone; removes the aliases in ``drop_aliases`` (by
    default ``challenger``) that point at this version, since a rejected candidate is no longer one.
    """
    client = connect(tracking_uri)
    version = str(version)
    _version_tags(client, name, version)
    text = reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"
    for key, value in {"rejected": "true", "rejected_stage": stage, "rejected_reason": text, "rejected_at": _now()}.items():
        client.set_model_version_tag(name, version, key, value)
    for alias in drop_aliases:
        if alias not in (CHAMPION, PREVIOUS) and _alias_version(client, name, alias) == version:
            client.delete_registered_model_alias(name, alias)


def rollback(name: str, *, alias: str = CHAMPION, previous_alias: str = PREVIOUS, from_version: str | int | None = None,
             reason: str = "rolled back by hand", tracking_uri: str | None = None) -> AliasMove:
    """Point ``alias`` back at the version ``previous_alias`` names; tag the version left as rejected.

    ``from_version`` (recommended for tasks) names the version expected to be ``alias`` now: if
    it was already rolled back, the earlier result is returned unchanged (a retry is safe); if
    ``alias`` is elsewhere for another reason, the rollback is refused. Without a
    ``previous_alias`` version there is nothing to return to: ``PromotionError``.
    """
    client = connect(tracking_uri)
    current = _alias_version(client, name, alias)
    if from_version is not None and current != str(from_version):
        done = _version_tags(client, name, str(from_version)).get(f"{alias}.rolled_back_to")
        if done is not None and done == current:
            return _move(client, name, alias, previous_alias, version=current, replaced=str(from_version),
                         previous=_settle_previous(client, name, alias, previous_alias, current), changed=False)
        raise PromotionError(
            f"{name}@{alias} is version {current}, not {from_version}: someone moved it meanwhile. "
            f"Check the registry and roll back from the version that serves now."
        )
    target = _alias_version(client, name, previous_alias)
    if target is None or target == current:
        raise _nothing_to_roll_back(name, alias, previous_alias, current)
    if current is not None:
        reject(name, current, reason, stage="rollback", drop_aliases=(), tracking_uri=tracking_uri)
        client.set_model_version_tag(name, current, f"{alias}.rolled_back_to", target)
    client.set_registered_model_alias(name, alias, target)
    return _move(client, name, alias, previous_alias, version=target, replaced=current,
                 previous=_settle_previous(client, name, alias, previous_alias, target), changed=True)


def rollback_target(name: str, *, alias: str = CHAMPION, previous_alias: str = PREVIOUS,
                    tracking_uri: str | None = None) -> dict[str, Any]:
    """What a rollback would serve, before anything moves: ``{from_version, version, image}``.

    ``image`` is the pinned serving image recorded on the ``previous_alias`` version, the one to
    redeploy first; ``rollback(from_version=...)`` then moves the alias once it serves.
    """
    client = connect(tracking_uri)
    current = _alias_version(client, name, alias)
    target = _alias_version(client, name, previous_alias)
    if target is None or target == current:
        raise _nothing_to_roll_back(name, alias, previous_alias, current)
    image = _version_tags(client, name, target).get("image")
    if not image:
        raise PromotionError(
            f"{name} version {target} has no serving image recorded (tag 'image'): build it first "
            f"(`detectops build --registered-model {name} --model-version {target} ...`), then roll back."
        )
    return {"name": name, "from_version": current, "version": target, "image": image}


def _settle_previous(client: Any, name: str, alias: str, previous_alias: str, champion: str) -> str | None:
    """After a rollback to ``champion``: ``previous`` names the champion before it, or nothing.

    Never the version just rolled back from (it is tagged rejected), never ``champion`` itself.
    """
    before = _version_tags(client, name, champion).get(f"{alias}.promoted_from") or None
    if before is not None and (before == champion or _version_tags(client, name, before).get("rejected") == "true"):
        before = None
    _point(client, name, previous_alias, before)
    return before

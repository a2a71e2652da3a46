"""Canary analysis, as Flagger does it: live traffic judges the canary window by window.

Every ``window_s`` seconds after a warm-up, Prometheus is asked, per track of the one production
Service, for the window's model requests, their 5xx answers, their p99 latency and the serving
processes' restarts. Each window then gets a verdict:

- ``fail``: the canary restarted (counted even on thin traffic: a restart is a fact, not a
  statistic), its success rate (non-5xx / all) is below ``min_success_rate``, its p99 is above
  ``max_p99_ratio`` x stable's p99 (+ ``p99_tolerance_s``), or the optional probe (the model's own
  smoke images) failed;
- ``no_verdict``: a track answered fewer than ``min_requests`` requests, or a p99 is missing: too
  little evidence either way, which is *not* a pass;
- ``pass``: otherwise.

Failed windows count against the canary: ``max_failed_windows`` of them roll it back. ``windows``
passing windows promote it. Neither within ``max_windows`` windows: rolled back as inconclusive.
Warm-up windows (starting before ``started_at + warmup_s``) are not judged.

The decision (``decide``) is a pure function of the window figures, separate from the queries
(``window_figures``) and the loop that waits for windows to close (``run_analysis``). Its result is
a plain dict with every window's numbers: an XCom value, and what ``window_metrics`` turns into
MLflow metrics (one step per window).

Restarts: there is no kube-state-metrics here; a serving process that restarts in place changes
its ``process_start_time_seconds`` (include/monitoring/rules/serving.yml reads it the same way).
A pod replaced by a new one (a new series) is not seen by this measure.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

log_ = logging.getLogger(__name__)

#: Model requests: what a canary is judged on (probes and scrapes would hide a failing model).
MODEL_ENDPOINTS = "/detect|/v1/models/.+:predict"
TRACKS = ("stable", "canary")
PASS, FAIL, NO_VERDICT, WARMUP = "pass", "fail", "no_verdict", "warmup"
PROMOTE, ROLLBACK, CONTINUE = "promote", "rollback", "continue"


@dataclass(frozen=True)
class CanaryThresholds:
    """The analysis' knobs (the level-2 DAG's Params)."""

    min_success_rate: float = 0.99
    max_p99_ratio: float = 1.2
    p99_tolerance_s: float = 0.0
    max_restarts: int = 0
    min_requests: int = 20
    max_failed_windows: int = 2
    windows: int = 3
    max_windows: int = 10
    window_s: float = 30
    warmup_s: float = 30

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_success_rate <= 1:
            problems.append("min_success_rate must be within [0, 1]")
        if self.max_p99_ratio <= 0 or self.p99_tolerance_s < 0:
            problems.append("max_p99_ratio must be > 0 and p99_tolerance_s >= 0")
        if self.max_restarts < 0 or self.min_requests < 1:
            problems.append("max_restarts must be >= 0 and min_requests >= 1")
        if self.max_failed_windows < 1 or self.windows < 1 or self.max_windows < self.windows:
            problems.append("max_failed_windows and windows must be >= 1, max_windows >= windows")
        if self.window_s <= 0 or self.warmup_s < 0:
            problems.append("window_s must be > 0 and warmup_s >= 0")
        if problems:
            raise ValueError("invalid canary thresholds: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | CanaryThresholds | None) -> CanaryThresholds:
        """From Params / XCom; unknown keys are an error, numbers given as strings are converted."""
        if isinstance(data, CanaryThresholds):
            return data
        data = dict(data or {})
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(types))
        if unknown:
            raise ValueError(f"unknown canary threshold(s) {', '.join(unknown)}; known: {', '.join(sorted(types))}")
        return cls(**{k: (int(v) if types[k] == "int" else float(v)) for k, v in data.items()})


@dataclass
class TrackFigures:
    """One track over one window: model requests, 5xx among them, p99 (s), restarts."""

    requests: float = 0.0
    errors: float = 0.0
    p99_s: float | None = None
    restarts: int = 0

    @property
    def success_rate(self) -> float | None:
        return (self.requests - self.errors) / self.requests if self.requests > 0 else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.success_rate
        return {"requests": round(self.requests, 2), "errors": round(self.errors, 2),
                "success_rate": None if rate is None else round(rate, 5),
                "p99_s": None if self.p99_s is None else round(self.p99_s, 5), "restarts": self.restarts}


@dataclass
class Window:
    """The figures of ``[start, end)`` (Unix seconds) for both tracks, and the probe's failure if any."""

    start: float
    end: float
    stable: TrackFigures = field(default_factory=TrackFigures)
    canary: TrackFigures = field(default_factory=TrackFigures)
    probe_error: str | None = None


# ------------------------------------------------------------------------------ the pure decision
def judge_window(window: Window, thresholds: CanaryThresholds) -> tuple[str, list[str]]:
    """(``pass`` | ``fail`` | ``no_verdict``, reasons) of one window after warm-up."""
    th, s, c = thresholds, window.stable, window.canary
    failures: list[str] = []
    if c.restarts > th.max_restarts:
        failures.append(f"canary restarted {c.restarts} time(s) (allowed {th.max_restarts})")
    if window.probe_error:
        failures.append(f"probe failed: {window.probe_error}")
    thin = [f"{name} answered {t.requests:.0f} model requests (< {th.min_requests})"
            for name, t in (("stable", s), ("canary", c)) if t.requests < th.min_requests]
    if thin:
        return (FAIL, failures) if failures else (NO_VERDICT, thin)
    rate = c.success_rate
    if rate is not None and rate < th.min_success_rate:
        failures.append(f"canary success rate {rate:.4f} < {th.min_success_rate}")
    if c.p99_s is None or s.p99_s is None:
        missing = [n for n, t in (("stable", s), ("canary", c)) if t.p99_s is None]
        return (FAIL, failures) if failures else (NO_VERDICT, [f"no p99 latency for {', '.join(missing)}"])
    budget = th.max_p99_ratio * s.p99_s + th.p99_tolerance_s
    if c.p99_s > budget:
        slack = f" + {th.p99_tolerance_s * 1000:.0f} ms" if th.p99_tolerance_s else ""
        failures.append(f"canary p99 {c.p99_s * 1000:.1f} ms > {th.max_p99_ratio} x stable's "
                        f"{s.p99_s * 1000:.1f} ms{slack}")
    if failures:
        return FAIL, failures
    return PASS, [f"canary success rate {rate:.4f}, p99 {c.p99_s * 1000:.1f} ms (budget {budget * 1000:.1f} ms)"]


def decide(windows: Sequence[Window], thresholds: CanaryThresholds | Mapping[str, Any] | None = None, *,
           started_at: float, final: bool = False) -> dict[str, Any]:
    """The verdict so far from the windows in order: ``promote``, ``rollback`` or ``continue``.

    Windows starting before ``started_at + warmup_s`` are listed as ``warmup`` and not judged.
    ``final=True`` (no more windows will come) or ``max_windows`` judged windows turn
    ``continue`` into ``rollback`` (inconclusive). Windows after the deciding one are not counted.
    """
    th = CanaryThresholds.from_dict(thresholds)
    rows: list[dict[str, Any]] = []
    counts = {PASS: 0, FAIL: 0, NO_VERDICT: 0}
    decision, reason = CONTINUE, ""
    for i, w in enumerate(windows):
        row: dict[str, Any] = {"index": i, "start": round(w.start, 3), "end": round(w.end, 3),
                               "stable": w.stable.to_dict(), "canary": w.canary.to_dict()}
        if w.probe_error:
            row["probe_error"] = w.probe_error
        if s99 := w.stable.p99_s:
            row["p99_ratio"] = None if w.canary.p99_s is None else round(w.canary.p99_s / s99, 4)
        if w.start < started_at + th.warmup_s:
            rows.append({**row, "verdict": WARMUP, "reasons": ["warm-up: not judged"]})
            continue
        if decision != CONTINUE:
            rows.append({**row, "verdict": "not_counted", "reasons": ["after the decision"]})
            continue
        verdict, reasons = judge_window(w, th)
        counts[verdict] += 1
        rows.append({**row, "verdict": verdict, "reasons": reasons})
        judged = sum(counts.values())
        if counts[FAIL] >= th.max_failed_windows:
            decision, reason = ROLLBACK, (f"{counts[FAIL]} failed window(s) (limit {th.max_failed_windows}); "
                                          f"last: {'; '.join(reasons)}")
        elif counts[PASS] >= th.windows:
            decision, reason = PROMOTE, f"{counts[PASS]} passing window(s) of {judged}, {counts[FAIL]} failed"
        elif judged >= th.max_windows:
            decision = ROLLBACK
            reason = f"inconclusive: {counts[PASS]} of {th.windows} passing windows in {judged} windows"
    if decision == CONTINUE:
        reason = f"{counts[PASS]} of {th.windows} passing windows, {counts[FAIL]} of {th.max_failed_windows} failed"
        if final:
            decision, reason = ROLLBACK, f"inconclusive, analysis ended: {reason}"
    return {"decision": decision, "reason": reason, "passed": counts[PASS], "failed": counts[FAIL],
            "no_verdict": counts[NO_VERDICT], "started_at": round(started_at, 3), "thresholds": th.to_dict(),
            "windows": rows}


def window_metrics(decision: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) per window of a decision, for ``mlflow.log_metrics(metrics, step=step)``."""
    out = []
    for row in decision["windows"]:
        metrics = {f"canary_analysis.verdict_{row['verdict']}": 1.0}
        for track in TRACKS:
            for key, value in row[track].items():
                if value is not None:
                    metrics[f"canary_analysis.{track}.{key}"] = float(value)
        if row.get("p99_ratio") is not None:
            metrics["canary_analysis.p99_ratio"] = float(row["p99_ratio"])
        out.append((row["index"], metrics))
    return out


# ------------------------------------------------------------------------------ Prometheus queries
def _selector(namespace: str, service: str, extra: str = "") -> str:
    return f'job="detectops-serving",namespace="{namespace}",service="{service}"{extra}'


def window_queries(namespace: str, service: str, window_s: float) -> dict[str, str]:
    """PromQL, by track, for a window of ``window_s`` ending at the query's evaluation time."""
    rng = f"[{int(math.ceil(window_s))}s]"
    sel = _selector(namespace, service, f',endpoint=~"{MODEL_ENDPOINTS}"')
    return {
        "requests": f"sum by (track) (increase(detectops_http_requests_total{{{sel}}}{rng}))",
        "errors": f'sum by (track) (increase(detectops_http_requests_total{{{sel},status=~"5.."}}{rng}))',
        "p99_s": ("histogram_quantile(0.99, sum by (track, le) "
                  f"(rate(detectops_http_request_duration_seconds_bucket{{{sel}}}{rng})))"),
    }


def restarts_query(namespace: str, service: str, since_s: float) -> str:
    """Restarts per track over the last ``since_s`` (changes of each process' start time)."""
    rng = f"[{max(1, int(math.ceil(since_s)))}s]"
    return f"sum by (track) (changes(process_start_time_seconds{{{_selector(namespace, service)}}}{rng}))"


def _by_track(result: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for series in result:
        track = series.get("metric", {}).get("track")
        value = float(series["value"][1])
        if track in TRACKS and not math.isnan(value):  # NaN: 0/0, no requests in the window
            out[track] = value
    return out


def restart_counts(prom: Any, namespace: str, service: str, *, since: float, at: float) -> dict[str, int]:
    """Restarts per track between ``since`` and ``at`` (Unix seconds)."""
    result = _by_track(prom.query(restarts_query(namespace, service, at - since), time=at))
    return {t: int(round(result.get(t, 0.0))) for t in TRACKS}


def window_figures(prom: Any, *, namespace: str, service: str, start: float, end: float,
                   restarts: Mapping[str, int] | None = None) -> Window:
    """The figures of ``[start, end)`` from Prometheus (``prom``: a ``PrometheusClient``)."""
    values = {name: _by_track(prom.query(q, time=end))
              for name, q in window_queries(namespace, service, end - start).items()}
    restarts = restarts or {}

    def track(t: str) -> TrackFigures:
        return TrackFigures(requests=values["requests"].get(t, 0.0), errors=values["errors"].get(t, 0.0),
                            p99_s=values["p99_s"].get(t), restarts=int(restarts.get(t, 0)))

    return Window(start=start, end=end, stable=track("stable"), canary=track("canary"))


# ------------------------------------------------------------------------------ the loop
def run_analysis(
    prom: Any,
    *,
    namespace: str,
    service: str,
    thresholds: CanaryThresholds | Mapping[str, Any] | None = None,
    started_at: float | None = None,
    probe: Callable[[], str | None] | None = None,
    settle_s: float = 2.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Judge window after window until a decision; return ``decide``'s dict (with ``seconds`` taken).

    ``started_at``: when the canary started taking traffic (default: now); the warm-up counts from
    it. Each window is queried ``settle_s`` after it closes (its last scrape is in). ``probe``, if
    given, runs once per window and returns an error message or ``None`` (e.g. the smoke photo
    against the canary's pods). Restarts since ``started_at`` count against the first judged window.
    """
    th = CanaryThresholds.from_dict(thresholds)
    started_at = clock() if started_at is None else started_at
    first = started_at + th.warmup_s
    windows: list[Window] = []
    seen_restarts = {t: 0 for t in TRACKS}
    log(f"canary analysis of {namespace}/{service}: warm-up {th.warmup_s:.0f}s, windows of {th.window_s:.0f}s, "
        f"promote after {th.windows} passing, roll back after {th.max_failed_windows} failed "
        f"(at most {th.max_windows} windows)")
    for i in range(th.max_windows):
        start = first + i * th.window_s
        end = start + th.window_s
        if (wait := end + settle_s - clock()) > 0:
            sleep(wait)
        total = restart_counts(prom, namespace, service, since=started_at, at=end)
        window = window_figures(prom, namespace=namespace, service=service, start=start, end=end,
                                restarts={t: max(0, total[t] - seen_restarts[t]) for t in TRACKS})
        seen_restarts = {t: max(total[t], seen_restarts[t]) for t in TRACKS}
        if probe is not None:
            window.probe_error = probe()
        windows.append(window)
        verdict = decide(windows, th, started_at=started_at)
        row = verdict["windows"][-1]
        log(f"window {i} [{row['verdict']}]: stable {row['stable']}, canary {row['canary']} - "
            f"{'; '.join(row['reasons'])}")
        if verdict["decision"] != CONTINUE:
            break
    verdict = decide(windows, th, started_at=started_at, final=True)
    verdict["seconds"] = round(clock() - started_at, 1)
    log(f"canary analysis decided {verdict['decision']}: {verdict['reason']}")
    return verdict

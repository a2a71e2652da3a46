"""The canary analysis' decision (pure) and its PromQL, without Prometheus."""

from __future__ import annotations

import json

import pytest

from detectops.monitoring.canary_analysis import (
    CanaryThresholds,
    TrackFigures,
    Window,
    decide,
    judge_window,
    restarts_query,
    run_analysis,
    window_figures,
    window_metrics,
    window_queries,
)

T0 = 1_800_000_000.0
TH = CanaryThresholds(windows=3, max_failed_windows=2, max_windows=6, window_s=30, warmup_s=30, min_requests=20)


def track(requests=100, errors=0, p99=0.100, restarts=0) -> TrackFigures:
    return TrackFigures(requests=requests, errors=errors, p99_s=p99, restarts=restarts)


def window(i: int, *, stable=None, canary=None, probe_error=None) -> Window:
    """The i-th window after warm-up (i = -1: inside the warm-up)."""
    start = T0 + TH.warmup_s + i * TH.window_s
    return Window(start=start, end=start + TH.window_s, stable=stable or track(), canary=canary or track(),
                  probe_error=probe_error)


GOOD = dict(canary=track(p99=0.110))
SLOW = dict(canary=track(p99=0.130))  # 1.3 x stable's 100 ms
ERRORS = dict(canary=track(requests=100, errors=2))  # 98 % < 99 %
THIN = dict(canary=track(requests=5))


def test_a_good_canary_passes_each_window_and_is_promoted_after_enough_of_them() -> None:
    assert judge_window(window(0, **GOOD), TH)[0] == "pass"
    partial = decide([window(0, **GOOD), window(1, **GOOD)], TH, started_at=T0)
    assert partial["decision"] == "continue" and partial["passed"] == 2
    done = decide([window(i, **GOOD) for i in range(3)], TH, started_at=T0)
    assert done["decision"] == "promote" and done["passed"] == 3 and done["failed"] == 0
    row = done["windows"][0]
    assert row["canary"]["p99_s"] == 0.11 and row["stable"]["success_rate"] == 1.0 and row["p99_ratio"] == 1.1
    json.dumps(done)  # XCom-safe


@pytest.mark.parametrize("figures, why", [
    (SLOW, "p99 130.0 ms > 1.2 x stable's 100.0 ms"),
    (ERRORS, "success rate 0.9800 < 0.99"),
    (dict(canary=track(restarts=1)), "restarted 1 time"),
    (dict(canary=track(restarts=1, requests=3)), "restarted 1 time"),  # a restart counts on thin traffic too
])
def test_a_window_fails_on_latency_errors_or_restarts(figures, why) -> None:
    verdict, reasons = judge_window(window(0, **figures), TH)
    assert verdict == "fail" and why in " ".join(reasons)


def test_failed_windows_count_to_a_rollback_even_between_passing_ones() -> None:
    windows = [window(0, **SLOW), window(1, **GOOD), window(2, **GOOD)]
    assert decide(windows, TH, started_at=T0)["decision"] == "continue"  # 1 failed of 2 allowed
    windows.append(window(3, **ERRORS))
    result = decide(windows, TH, started_at=T0)
    assert result["decision"] == "rollback" and result["failed"] == 2 and result["passed"] == 2
    assert "2 failed window(s)" in result["reason"] and "success rate" in result["reason"]
    assert [r["verdict"] for r in result["windows"]] == ["fail", "pass", "pass", "fail"]


def test_thin_windows_are_no_verdict_not_a_pass_and_end_inconclusive() -> None:
    verdict, reasons = judge_window(window(0, **THIN), TH)
    assert verdict == "no_verdict" and "canary answered 5 model requests (< 20)" in reasons
    assert judge_window(window(0, stable=track(requests=0)), TH)[0] == "no_verdict"
    # errors among too few requests are no evidence either way
    assert judge_window(window(0, canary=track(requests=5, errors=5)), TH)[0] == "no_verdict"
    thin = [window(i, **THIN) for i in range(5)]
    result = decide(thin, TH, started_at=T0)
    assert result["decision"] == "continue" and result["no_verdict"] == 5 and result["passed"] == 0
    assert decide(thin + [window(5, **THIN)], TH, started_at=T0)["decision"] == "rollback"  # max_windows
    ended = decide(thin[:2] + [window(2, **GOOD)], TH, started_at=T0, final=True)
    assert ended["decision"] == "rollback" and ended["reason"].startswith("inconclusive")


def test_warm_up_windows_are_listed_but_not_judged() -> None:
    warm = window(-1, canary=track(errors=50, p99=5.0))  # a cold canary's first seconds
    result = decide([warm] + [window(i, **GOOD) for i in range(3)], TH, started_at=T0)
    assert result["decision"] == "promote" and result["failed"] == 0
    assert result["windows"][0]["verdict"] == "warmup"


def test_probe_failure_and_missing_latency() -> None:
    assert judge_window(window(0, probe_error="expected a 'person'"), TH)[0] == "fail"
    verdict, reasons = judge_window(window(0, canary=track(p99=None)), TH)
    assert verdict == "no_verdict" and "no p99 latency for canary" in reasons[0]


def test_p99_tolerance_absorbs_bucket_noise_on_fast_services() -> None:
    fast = dict(stable=track(p99=0.004), canary=track(p99=0.009))
    assert judge_window(window(0, **fast), TH)[0] == "fail"
    assert judge_window(window(0, **fast), CanaryThresholds(p99_tolerance_s=0.010))[0] == "pass"


def test_thresholds_from_params_and_refusals() -> None:
    th = CanaryThresholds.from_dict({"min_success_rate": "0.995", "windows": "4", "max_windows": 8})
    assert th.min_success_rate == 0.995 and th.windows == 4 and isinstance(th.windows, int)
    with pytest.raises(ValueError, match="unknown canary threshold"):
        CanaryThresholds.from_dict({"max_latency": 1})
    with pytest.raises(ValueError, match="max_windows >= windows"):
        CanaryThresholds(windows=5, max_windows=3)


def test_window_metrics_for_mlflow() -> None:
    result = decide([window(-1), window(0, **SLOW)], TH, started_at=T0)
    steps = dict(window_metrics(result))
    assert steps[1]["canary_analysis.verdict_fail"] == 1.0 and steps[1]["canary_analysis.p99_ratio"] == 1.3
    assert steps[1]["canary_analysis.canary.requests"] == 100.0


def test_queries_select_the_one_service_by_track_and_model_endpoints() -> None:
    q = window_queries("prod", "detector", 30)
    for promql in q.values():
        assert 'namespace="prod",service="detector"' in promql and "[30s]" in promql
        assert 'endpoint=~"/detect|/v1/models/.+:predict"' in promql
    assert q["p99_s"].startswith("histogram_quantile(0.99, sum by (track, le)")
    assert 'status=~"5.."' in q["errors"]
    assert "changes(process_start_time_seconds" in restarts_query("prod", "detector", 95.2)
    assert "[96s]" in restarts_query("prod", "detector", 95.2)


class FakeProm:
    """Answers the window queries as Prometheus would: canary slower by ``slow`` x, NaN p99 with no traffic."""

    def __init__(self, slow: float = 1.0, restarts_at: float | None = None) -> None:
        self.slow, self.restarts_at, self.calls = slow, restarts_at, []

    def query(self, promql: str, *, time=None):
        self.calls.append((promql, time))

        def vec(stable, canary):
            return [{"metric": {"track": "stable"}, "value": [time, str(stable)]},
                    {"metric": {"track": "canary"}, "value": [time, str(canary)]}]

        if "changes(" in promql:
            return vec(0, 1 if self.restarts_at is not None and time >= self.restarts_at else 0)
        if "histogram_quantile" in promql:
            return vec(0.1, 0.1 * self.slow)
        if 'status=~"5.."' in promql:
            return vec(0, 0)
        return vec(60, 30)


def test_window_figures_read_each_track_and_treat_nan_as_missing() -> None:
    class NanProm(FakeProm):
        def query(self, promql, *, time=None):
            if "histogram_quantile" in promql:
                return [{"metric": {"track": "canary"}, "value": [time, "NaN"]}]
            return super().query(promql, time=time)

    w = window_figures(NanProm(), namespace="prod", service="detector", start=T0, end=T0 + 30)
    assert w.stable.requests == 60 and w.canary.requests == 30 and w.canary.p99_s is None


def _run(prom, **th):
    now = [T0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    result = run_analysis(prom, namespace="prod", service="detector", started_at=T0,
                          thresholds={**TH.to_dict(), **th}, clock=lambda: now[0], sleep=sleep, log=lambda _: None)
    return result, slept


def test_run_analysis_waits_for_each_window_to_close_and_stops_at_the_decision() -> None:
    result, slept = _run(FakeProm())
    assert result["decision"] == "promote" and len(result["windows"]) == 3
    assert slept[0] == pytest.approx(TH.warmup_s + TH.window_s + 2.0)  # warm-up + first window + settle
    assert result["seconds"] == pytest.approx(TH.warmup_s + 3 * TH.window_s + 2.0)
    slow, _ = _run(FakeProm(slow=1.5))
    assert slow["decision"] == "rollback" and len(slow["windows"]) == 2


def test_run_analysis_counts_a_restart_once_and_the_probe_per_window() -> None:
    result, _ = _run(FakeProm(restarts_at=T0 + 70), max_failed_windows=1)
    assert result["decision"] == "rollback" and result["windows"][-1]["canary"]["restarts"] == 1
    result, _ = _run(FakeProm(restarts_at=T0 + 70), max_failed_windows=2, windows=3)
    assert [r["canary"]["restarts"] for r in result["windows"]] == [0, 1, 0, 0]
    assert result["decision"] == "promote"

"""Evaluation: COCO metrics (pycocotools), latency, plots, and logging to MLflow.

    result = evaluate_model(model_ref, dataset_dir)        # -> EvaluationResult, files in result.output_dir
    run_id = log_evaluation(result, experiment="level0")   # params, metrics, artifacts, tags in MLflow
"""

from detectops.evaluate.coco_metrics import METRIC_NAMES, CocoMetrics, coco_metrics
from detectops.evaluate.evaluation import EvaluationResult, evaluate_model
from detectops.evaluate.mlflow_log import log_evaluation

__all__ = ["METRIC_NAMES", "CocoMetrics", "EvaluationResult", "coco_metrics", "evaluate_model", "log_evaluation"]

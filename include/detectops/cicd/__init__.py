"""Level 2: CI/CD of the pipeline itself (the DAG ``detectops_level2_cicd``).

A commit reaches production only through its tests, a staging run of level 1 with the commit's
pipeline image, and a canary that live traffic judges:

    checkout -> build (pipeline + test images, tagged by the full SHA) -> tests in a pod
    -> staging (level 1 in ``detectops-staging``, alias ``staging``) -> canary beside stable
    -> analysis (Prometheus windows under bounded load) -> [approval] -> promote | roll back

- ``params``: the DAG's Params form (parse-time light);
- ``steps``: plain functions, one per task, testable without Airflow;
- ``release``: what a promotion or a rollback changes and records (aliases, the pipeline-image
  Variable and its previous value, the MLflow record);
- ``tasks``: the TaskFlow wrappers the DAG file wires.
"""

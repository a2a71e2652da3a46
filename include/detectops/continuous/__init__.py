"""Level 1, continuous training: the steps of ``detectops_level1_training``.

- ``params``: the DAG's Params form (model, label map, aliases, namespace, thresholds);
- ``tasks``: the TaskFlow tasks the DAG file wires (thin: each calls one step);
- ``steps``: the work of each step, plain functions of small dicts, testable without Airflow;
- ``infra_validation``: a throwaway pod of the candidate's image must answer a request.
"""

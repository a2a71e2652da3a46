# Airflow for docker-compose.yaml: the official Airflow image plus DetectOps' pinned requirements
# and the detectops library (installed editable from the mounted repository at start).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.0-python3.11
FROM ${AIRFLOW_IMAGE}
COPY requirements.txt constraints.txt /opt/detectops/
RUN pip install --no-cache-dir -r /opt/detectops/requirements.txt -c /opt/detectops/constraints.txt

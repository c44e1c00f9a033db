# One image for every Airflow service, the register emulator and the demo-data generator, built from
# the exact pins (no package is installed at container start).
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins GX_ANALYTICS_ENABLED=false
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt && useradd --uid 50000 --home-dir /opt/airflow airflow
WORKDIR /opt/airflow
# The folders docker-compose.yaml mounts named volumes on: an empty named volume takes the ownership
# of the folder it is mounted on, so the services (running as `airflow`) can write there.
# AIRFLOW_HOME itself too: every airflow command but `version` writes airflow.cfg there first.
RUN mkdir -p logs var auth nvr && chown airflow . logs var auth nvr && chmod 0700 var auth nvr
COPY --chown=airflow dags/ dags/
COPY --chown=airflow plugins/ plugins/
COPY --chown=airflow include/ include/
USER airflow

# One image for every Airflow service and the register emulator, built from the exact pins.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/airflow/include:/opt/airflow/plugins GX_ANALYTICS_ENABLED=false
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt && useradd --uid 50000 --home-dir /opt/airflow airflow
WORKDIR /opt/airflow
COPY --chown=airflow dags/ dags/
COPY --chown=airflow plugins/ plugins/
COPY --chown=airflow include/ include/
USER airflow

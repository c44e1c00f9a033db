"""Run one DAG with `dag.test()` in a fresh process (Airflow reads its config at import time).

Usage: python dag_test_runner.py DAGS_FOLDER DAG_ID RUN_CONF_JSON
Prints `DAGRUN_STATE <state>` last.
"""

import json
import sys
from datetime import UTC, datetime

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    raise SystemExit(f"import errors: {bag.import_errors}")
dag = bag.get_dag(sys.argv[2])
run = dag.test(logical_date=datetime.now(UTC), run_conf=json.loads(sys.argv[3]))
print("DAGRUN_STATE", run.state)

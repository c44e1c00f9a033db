"""DagBag integrity and policy: what every DAG of the project must satisfy."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dags.conftest import airflow_environment

pytestmark = pytest.mark.dags
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
ALLOWED_TOP_LEVEL = {"__future__", "datetime", "pendulum", "airflow.sdk", "typing", "collections", "pathlib"}

POLICY_SCRIPT = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={folder!r})
out = {{"errors": {{k: str(v)[:500] for k, v in bag.import_errors.items()}}, "dags": {{}}}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {{
        "fileloc": dag.fileloc, "tags": sorted(dag.tags), "doc_md": bool(dag.doc_md),
        "tasks": {{t.task_id: {{"owner": t.owner, "retries": t.retries}} for t in dag.tasks}},
    }}
print("POLICY" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-parse")
    result = subprocess.run(
        [sys.executable, "-c", POLICY_SCRIPT.format(folder=str(ROOT / "dags"))],
        env=airflow_environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("POLICY")), None)
    assert line, result.stderr[-3000:]
    import json

    return json.loads(line[len("POLICY") :])


def test_no_import_errors(dagbag):
    assert dagbag["errors"] == {}
    assert "vaccinations_daily" in dagbag["dags"]


def test_every_dag_has_tags_owner_retries_and_docs(dagbag):
    for dag_id, info in dagbag["dags"].items():
        assert info["tags"], dag_id
        assert info["doc_md"], dag_id
        for task_id, task in info["tasks"].items():
            assert task["owner"] not in ("", "airflow"), (dag_id, task_id)
            assert task["retries"] >= 1, (dag_id, task_id)


def test_one_dag_per_file_named_after_it(dagbag):
    for dag_id, info in dagbag["dags"].items():
        assert Path(info["fileloc"]).stem == dag_id


def test_daily_dag_has_the_issue_tasks_in_order(dagbag):
    tasks = set(dagbag["dags"]["vaccinations_daily"]["tasks"])
    assert "register_vaccine_catalog" in dagbag["dags"]
    assert "vaccinations_monthly_reconciliation" in dagbag["dags"]
    assert "vaccinations_weekly_digest" in dagbag["dags"]
    assert tasks == {
        "list_sources",
        "extract_vaccinations",
        "validate_records",
        "build_bundles",
        "submit_bundles",
        "finish_submission",
        "write_rejection_report",
    }


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_no_heavy_library_at_module_level(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: imports inside tasks are the point
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert name in ALLOWED_TOP_LEVEL, f"{path.name} imports {name} at module level"
    assert len(path.read_text().splitlines()) <= 150

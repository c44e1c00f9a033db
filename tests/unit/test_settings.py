import json

import pytest

from vaxreport.settings import RegistrySettings, connection_from_env, sqlalchemy_url

pytestmark = pytest.mark.unit


def test_json_connection_like_airflow():
    env = {
        "AIRFLOW_CONN_NVR_API": '{"conn_type": "http", "host": "https://nvr.example.se/api", '
        '"login": "id", "password": "pw", "extra": {"scope": "nvr"}}'
    }
    conn = connection_from_env("nvr_api", env)
    reg = RegistrySettings.from_connection(conn)
    assert reg.base_url == "https://nvr.example.se/api"
    assert reg.token_url == "https://nvr.example.se/api/oauth2/token"
    assert (reg.client_id, reg.client_secret, reg.scope) == ("id", "pw", "nvr")


def test_uri_connection_and_database_urls():
    conn = connection_from_env("x", {"AIRFLOW_CONN_X": "postgres://u:p%40ss@db.example:5433/ledger"})
    assert conn.password == "p@ss"
    url = sqlalchemy_url(conn)
    assert (url.drivername, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "p@ss",
        "db.example",
        5433,
        "ledger",
    )
    assert "p@ss" not in str(url)  # rendered URLs hide the password
    lite = connection_from_env("y", {"AIRFLOW_CONN_Y": '{"conn_type": "sqlite", "host": "/tmp/l.sqlite"}'})
    assert sqlalchemy_url(lite).database == "/tmp/l.sqlite"


def test_relative_sqlite_paths_are_taken_from_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv("VAXREPORT_ROOT", str(tmp_path))
    lite = connection_from_env("y", {"AIRFLOW_CONN_Y": '{"conn_type": "sqlite", "host": "var/l.sqlite"}'})
    assert sqlalchemy_url(lite).database == str(tmp_path / "var" / "l.sqlite")


def test_missing_connection_says_which_variable_to_set():
    with pytest.raises(LookupError, match="AIRFLOW_CONN_NVR_API"):
        connection_from_env("nvr_api", {})


def test_env_file_fills_only_unset_variables(tmp_path, monkeypatch):
    from vaxreport.settings import load_env_file

    env_file = tmp_path / ".env"
    env_file.write_text('# comment\nVX_A=\'{"x": 1}\'\nVX_B=plain\n\nVX_C="q"\n')
    monkeypatch.setenv("VX_B", "already")
    monkeypatch.delenv("VX_A", raising=False)
    monkeypatch.delenv("VX_C", raising=False)
    assert load_env_file(env_file) == env_file
    import os

    assert (os.environ["VX_A"], os.environ["VX_B"], os.environ["VX_C"]) == ('{"x": 1}', "already", "q")


def test_a_worker_among_several_keeps_to_its_part_of_the_rate_and_the_bundles_in_flight():
    conn = connection_from_env(
        "nvr_api",
        {
            "AIRFLOW_CONN_NVR_API": json.dumps(
                {"host": "https://nvr.example.se", "extra": {"max_requests_per_s": 45, "concurrency": 8}}
            )
        },
    )
    whole = RegistrySettings.from_connection(conn)
    assert whole.divided(1) is whole
    quarter = whole.divided(4)
    assert (quarter.max_requests_per_s, quarter.concurrency) == (11.25, 2)
    assert whole.divided(16).concurrency == 1  # at least one bundle in flight
    assert quarter.client_secret == whole.client_secret

"""Airflow glue for vaxreport: the register hook and the bridge from Airflow connections to the package."""

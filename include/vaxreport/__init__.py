"""vaxreport: report every vaccination a region gives to the National Vaccination Register.

The package holds all domain logic and imports no Airflow, so every step can run, be debugged
and be tested with plain Python (`python -m vaxreport ...`). The DAGs in `dags/` only wire these
steps to a schedule.
"""

__version__ = "0.1.0"
SYSTEM_NAME = "vaxreport"

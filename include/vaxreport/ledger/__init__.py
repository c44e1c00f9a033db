"""The ledger: one row per source record version, one state per row; the truth between tasks."""

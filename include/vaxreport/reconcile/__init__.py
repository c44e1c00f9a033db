"""Monthly reconciliation of the sources against the ledger and the register."""

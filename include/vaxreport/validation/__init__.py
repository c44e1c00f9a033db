"""Local validation: the register's own rules, applied before anything is sent."""

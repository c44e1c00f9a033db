"""Journal-system sources: each kind has its schema, its `.sql` and a mapping to the canonical record."""

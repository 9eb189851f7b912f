"""The segscan agent: pulls assignments for its subnet, scans, reports."""

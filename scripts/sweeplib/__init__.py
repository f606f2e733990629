"""scripts/sweeplib — the parts of scripts/sweep.py: rows.py (what runs), runs.py (running them),
report.py (CSVs, summary, plot)."""

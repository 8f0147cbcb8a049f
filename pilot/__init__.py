"""Pilots: randomised treatment and control within tiers, their power, and the measured lift.

Pure statistics and tables (numpy, pandas, scipy): no files, no store, no console. The CLI reads and writes, the
reports draw, the workspace keeps the assignments.
"""

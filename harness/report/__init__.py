"""Reports from run folders: `build_report(run_dir)` for one run, `build_compare(run_dirs, out_dir)` across runs.

Both read only the run folders (result.json and raw/): no running stack is needed. See docs/reports.md.
"""

from harness.report.builder import build_report
from harness.report.compare import build_compare

__all__ = ["build_report", "build_compare"]

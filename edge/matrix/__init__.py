"""`edge matrix`: compile and check every (target, quant, recipe) entry of a TOML file into one output folder.

  plan.py     MATRIX.toml -> Matrix of typed entries: every key, target, quant mode, file and name checked before
              any work; each entry's input hash (what a rerun compares to reuse a finished entry)
  run.py      one entry: compile and check in a staging folder, renamed into place when both finished; all entries,
              serially here or as Ray tasks (edge.cluster.session), finished ones reused, failed ones reported
  summary.py  the summary: one row per entry (summary.json) and a self-contained HTML table (summary.html)
"""

"""``polyrec eval``: the runners (progress bars, result assembly) and reports (JSON, PNG, tables)
of the evaluations whose protocols live in :mod:`polyrec.evaluation`."""

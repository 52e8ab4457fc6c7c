"""E2, cross-spectral prediction (Raman from IR and back): the runs (:mod:`.run`), the per-molecule
results (:mod:`.results`), aggregation and error analysis (:mod:`.analysis`) and the report
(:mod:`.report`). It reads E1's results as files (``summary.json``, ``best.pt``)."""

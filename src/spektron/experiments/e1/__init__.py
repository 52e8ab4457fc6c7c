"""E1, masked spectral reconstruction benchmark: the runs (:mod:`.run`), the tuning protocol
(:mod:`.tuning`) and the report (:mod:`.report`). It hands its results to the other experiments
as files (``summary.json``, ``best.pt``), never as imports."""

"""E3, transfer functions of trained D-LinOSS layers against untrained and shuffled-order
controls: the runs and analysis (:mod:`.run`, over :mod:`spektron.analysis`) and the report
(:mod:`.report`). It reads E1's D-LinOSS checkpoints as files."""

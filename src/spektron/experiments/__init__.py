"""The study's experiments, one package each (:mod:`~spektron.experiments.e1` …
:mod:`~spektron.experiments.e4`), which never import each other, over what they share: the run
machinery (:mod:`.runner`), the report toolkit (:mod:`.reporting`) and dispatcher
(:mod:`.report`), the run-all job (:mod:`.run_all`, :mod:`.plan`, :mod:`.data_overview`,
:mod:`.validation_report`), the results export (:mod:`.export`), ``pretrain``, ``predict`` and
``bench``."""

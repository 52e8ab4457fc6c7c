"""E4, calibration transfer on the real corn and tablet NIR data: the orchestration
(:mod:`.run`), the classical methods (:mod:`.classical`), the probed and fine-tuned backbones
(:mod:`.deep`) and the report (:mod:`.report`). Its pretrained arms read E1's checkpoints as
files."""

"""`edge compile`: model -> graphs -> calibration -> lowered programs -> bundle (stages in stages.py).

  graphs.py       the three graphs an app runs; prepare_graph (BatchNorms folded, a target's rewrites)
  rewrites.py     exact graph rewrites that some delegates need
  calibration.py  image/mask pairs, timestep-aware recordings of every graph's inputs, cached
  prepare.py      stage 1, shared with `edge check` and `edge sensitivity`: models, graphs, recordings
  stages.py       resolve -> prepare -> lower -> golden -> manifest -> write
  recipe.py       mixed-precision recipes (modules kept float)
  sensitivity.py  `edge sensitivity`: which layer groups quantization hurts, and the recipe that follows
"""

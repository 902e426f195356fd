"""Training and recipes: the loop and its loss, the presets, checkpoints, several processes, and
the shipped models.

* ``train``: the training loop (crossbatch, plain or stream), the d schedule, a run a step at a time.
* ``objective``: the language-model loss of one batch in each mode, and the held-out loss.
* ``presets``: the named recipes behind every shipped checkpoint, the race and the tests.
* ``checkpoint``: atomic, safe checkpoints and the shipped names.
* ``distributed``: what changes with several processes (``torchrun``).
* ``longllama``: the LongLLaMA recipe, a vanilla model's layers made memory layers.
* ``pretrained``: the notebooks' models, a shipped checkpoint or a short training run.
"""

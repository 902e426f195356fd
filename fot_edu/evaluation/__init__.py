"""Evaluation: every measurement the README, notebooks and figures report, one implementation each.

* ``stats``: sample sizes and 95% intervals (Wilson, bootstrap over documents).
* ``sets``: the fixed evaluation sets (which held-out documents, which seed).
* ``memory_fill``: a memory assembled from chosen windows, and reading a window with it.
* ``distraction``: r_d (§3.3) and dictionary accuracy with distractors in memory.
* ``perplexity``: perplexity with distractor documents in memory (rise, rise ratio).
* ``long_context``: perplexity against memory size, and passkey retrieval (§4.1, §5.1, Fig. 1).
* ``copying``: copying inside the window (the skill a memory layer extends).
* ``probes``: what a memory layer stored, found and attended to (the figures' numbers).
"""

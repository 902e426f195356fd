"""Teaching: what students and teachers see and do.

* ``figures`` (plotly figures), ``widgets`` (ipywidgets), ``report`` (the HTML report and the
  terminal tour).
* ``race``: ``d = 1`` and FoT trained side by side, live, then evaluated; ``race_board`` (the race
  as a live widget and as terminal text); ``side_by_side`` (event streams in parallel processes).
* ``exercises`` (one exercise per mechanism, with checkers), ``assignments`` (the checking
  machinery) and ``handouts`` (student versions of notebooks, nbgrader's metadata).
"""

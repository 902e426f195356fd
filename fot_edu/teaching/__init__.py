"""Teaching: what students and teachers see and do.

* ``figures`` (plotly figures), ``widgets`` (ipywidgets), ``report`` (the HTML report and the
  terminal tour).
* ``race``: ``d = 1`` and FoT trained side by side, live, then evaluated.
* ``exercises`` (one exercise per mechanism, with checkers) and ``assignments`` (the checking
  machinery, student versions of notebooks).
"""

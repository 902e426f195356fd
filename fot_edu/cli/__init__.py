"""The command line and the servers: ``python -m fot_edu --help``.

* ``parser`` (the arguments), ``commands`` (what each command does), ``serve`` (JupyterLab and
  the Voilà apps).
"""

"""Command-line programs, one module per command: ``build_parser()`` and ``main(argv=None) -> int``.

Console scripts (``dfssat-<command>``, setup.cfg) and the ``tools/<command>.py`` shims both call
:func:`deepfake_ssat.runcli.run_cli` on a module's ``main``; the work itself lives in the library.
"""

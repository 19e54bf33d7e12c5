"""Exit statuses every ``labmake`` command shares: 0 done, 1 failed, 2 used wrongly.

2 is argparse's own status for a bad command line, so a bad PATH or params.yaml, which a
script cannot tell apart from a typo in the options, exits the same way.
"""

EXIT_USAGE = 2

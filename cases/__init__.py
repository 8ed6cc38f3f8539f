"""Built-in cases: one file each, every one with an exact or independently computed truth.

`pdeml cases` lists them; `pdeml train NAME` trains one.
"""

from pdeml._roots import check as _check

_check(__name__, "cases")

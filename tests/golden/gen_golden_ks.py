#!/usr/bin/python3
"""Prints the golden values of tests/core/verify/ks_test.cc: scipy.stats.ks_2samp (default
method "auto") on fixed samples. Run with Debian's python3-scipy; paste the output into the test
when a case is added. Not run by the tests (scipy is not a dependency of the project)."""
from scipy.stats import ks_2samp
import scipy

CASES = {
    "disjoint_3_4": ([1, 2, 3], [4, 5, 6, 7]),
    "equal_5": ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
    "ties": ([1, 1, 2, 2, 3], [1, 2, 2, 3, 3, 3]),
    "shift_20_30": ([i * 0.1 for i in range(20)], [0.5 + i * 0.07 for i in range(30)]),
    "interleave_32": ([i * 2.0 for i in range(32)], [i * 2.0 + 1 for i in range(32)]),
    "one_vs_40": ([0.5], [i / 40 for i in range(40)]),
    "block_32_32": ([i for i in range(32)], [i + 12 for i in range(32)]),
}
print("# scipy", scipy.__version__)
for name, (a, b) in CASES.items():
    r = ks_2samp(a, b)
    print(f"{name} D={r.statistic!r} p={r.pvalue!r}")

"""F(n) by fast doubling on GMP integers, and its decimal form.

Standard numbering: F(0) = 0, F(1) = 1, F(10) = 55.

GMP (through gmpy2) does the arithmetic and the decimal conversion: CPython's
int refuses str() beyond 4,300 digits and converts in quadratic time, which
for F(10**7) (2,089,877 digits) means about a minute instead of a fraction of
a second.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import mpz


def fibonacci(n: int) -> mpz:
    """Return F(n) for n >= 0.

    Walks the bits of n from the top, keeping (F(k-1), F(k)) and doubling k
    at each step with two squarings (the identities GMP's own mpz_fib_ui uses):
        F(2k+1) = 4 F(k)^2 - F(k-1)^2 + 2(-1)^k
        F(2k-1) = F(k)^2 + F(k-1)^2
        F(2k)   = F(2k+1) - F(2k-1)
    Squarings are markedly cheaper than general products on numbers this size.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return mpz(0)
    previous, current = mpz(0), mpz(1)  # F(k-1), F(k) with k = 1
    k = 1
    for bit in bin(n)[3:]:  # the leading 1 is k = 1 already
        square, previous_square = current * current, previous * previous
        odd_up = (square << 2) - previous_square + (-2 if k & 1 else 2)  # F(2k+1)
        odd_down = square + previous_square  # F(2k-1)
        if bit == "1":
            # k -> 2k + 1: keep (F(2k), F(2k+1))
            previous, current = odd_up - odd_down, odd_up
            k = 2 * k + 1
        else:
            # k -> 2k: keep (F(2k-1), F(2k))
            previous, current = odd_down, odd_up - odd_down
            k = 2 * k
    return current


def to_decimal(value: mpz) -> str:
    """The exact decimal digits of value, converted by GMP."""
    return str(gmpy2.digits(value))

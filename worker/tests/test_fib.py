from __future__ import annotations

import gmpy2
import pytest
from fibworker.fib import fibonacci, to_decimal
from hypothesis import given, settings
from hypothesis import strategies as st

KNOWN = {0: 0, 1: 1, 2: 1, 3: 2, 10: 55, 20: 6765, 50: 12586269025, 93: 12200160415121876738}


@pytest.mark.parametrize(("n", "expected"), KNOWN.items())
def test_known_values(n: int, expected: int) -> None:
    assert fibonacci(n) == expected


def test_first_hundred_follow_the_recurrence() -> None:
    values = [fibonacci(n) for n in range(100)]
    assert values[:2] == [0, 1]
    assert all(values[n] == values[n - 1] + values[n - 2] for n in range(2, 100))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=200_000))
def test_matches_gmp(n: int) -> None:
    assert fibonacci(n) == gmpy2.fib(n)


def test_one_million_has_208988_digits() -> None:
    decimal = to_decimal(fibonacci(1_000_000))
    assert len(decimal) == 208_988
    assert decimal == gmpy2.fib(1_000_000).digits()
    assert decimal.startswith("19532821287077577316")
    assert decimal.endswith("68996526838242546875")


def test_decimal_beyond_cpythons_int_str_limit() -> None:
    # CPython's str(int) refuses more than 4,300 digits; GMP's conversion does not.
    decimal = to_decimal(fibonacci(30_000))
    assert len(decimal) > 4300
    assert decimal == gmpy2.fib(30_000).digits()


def test_negative_index_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        fibonacci(-1)

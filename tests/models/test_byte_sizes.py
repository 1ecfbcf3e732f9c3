"""Byte counts for people: one formatter for sizes, one for plan figures."""

import pytest

from models.byte_sizes import format_bytes, format_memory


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.5 KB"),
        (4_200_000, "4.2 MB"),
        (61_234_000_000, "61.2 GB"),
        (1_100_000_000_000, "1.1 TB"),
    ],
)
def test_sizes_use_decimal_units(n, text):
    assert format_bytes(n) == text


def test_an_unknown_size_says_so():
    assert format_bytes(None) == "?"
    assert format_bytes(None, missing="—") == "—"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (412_000_000, "412 MB"),
        (949_000_000, "949 MB"),
        (960_000_000, "1.0 GB"),
        (61.2e9, "61.2 GB"),
        (1_400_000, "1.4 MB"),  # the tests' tiny model was "0 MB weights"
        (400_000, "400.0 KB"),
    ],
)
def test_plan_figures_are_gigabytes_or_whole_megabytes(n, text):
    assert format_memory(n) == text

"""Numeric settings: a value that is not a finite number is refused by name."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from sharedkit.envconf import number


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "ten"])
def test_a_number_setting_must_be_a_finite_number(settings, raw):
    settings.KASTLE_METRICS_EXPORT_CACHE_SECONDS = raw
    with pytest.raises(ImproperlyConfigured, match=f"KASTLE_METRICS_EXPORT_CACHE_SECONDS must be .*{raw!r}"):
        number("KASTLE_METRICS_EXPORT_CACHE_SECONDS", 10.0, what="a number of seconds")


def test_a_number_setting_reads_its_value(settings):
    settings.KASTLE_METRICS_EXPORT_CACHE_SECONDS = "2.5"
    assert number("KASTLE_METRICS_EXPORT_CACHE_SECONDS", 10.0) == 2.5

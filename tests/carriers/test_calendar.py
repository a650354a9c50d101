"""Pickup days: the next working day after the booking, per country and region, with the cut-off.

A pickup booked for a holiday never comes, and the shopper waits at home for nothing; these tests
pin the holidays that matter most for the shops this is built for (DE and ES, with regions).
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from connector.carriers.calendar import is_working_day, next_working_day

BERLIN = ZoneInfo("Europe/Berlin")
MADRID = ZoneInfo("Europe/Madrid")


def berlin(y, m, d, hour=10, minute=0):
    return datetime(y, m, d, hour, minute, tzinfo=BERLIN)


def madrid(y, m, d, hour=10, minute=0):
    return datetime(y, m, d, hour, minute, tzinfo=MADRID)


# ------------------------------------------------------------------ Germany: Christmas and New Year

def test_christmas_eve_is_a_working_day_in_germany():
    """24 December is no public holiday in Germany (shops close by choice: see closed_days)."""
    assert next_working_day("DE", after=berlin(2025, 12, 23)) == date(2025, 12, 24)


def test_christmas_days_and_the_weekend_are_skipped():
    # 25 and 26 Dec 2025 are Thursday and Friday, then the weekend.
    assert next_working_day("DE", after=berlin(2025, 12, 24)) == date(2025, 12, 29)


def test_cut_off_on_christmas_eve_moves_past_the_next_working_day():
    assert next_working_day("DE", after=berlin(2025, 12, 24, 13, 59), cutoff_hour=14) == date(2025, 12, 29)
    assert next_working_day("DE", after=berlin(2025, 12, 24, 14, 0), cutoff_hour=14) == date(2025, 12, 30)


def test_closed_days_are_skipped_like_holidays():
    closed = {date(2025, 12, 24), date(2025, 12, 31)}
    assert next_working_day("DE", after=berlin(2025, 12, 23), closed_days=closed) == date(2025, 12, 29)
    assert next_working_day("DE", after=berlin(2025, 12, 30), closed_days=closed) == date(2026, 1, 2)


def test_new_years_day_is_skipped():
    assert next_working_day("DE", after=berlin(2025, 12, 31)) == date(2026, 1, 2)


def test_cut_off_before_new_year_crosses_the_holiday():
    assert next_working_day("DE", after=berlin(2025, 12, 30, 15, 59), cutoff_hour=16) == date(2025, 12, 31)
    assert next_working_day("DE", after=berlin(2025, 12, 30, 16, 0), cutoff_hour=16) == date(2026, 1, 2)


# ------------------------------------------------------------------ Easter

def test_good_friday_to_easter_monday_in_germany():
    # Easter 2026: Good Friday 3 April, Easter Monday 6 April.
    assert next_working_day("DE", after=berlin(2026, 4, 2)) == date(2026, 4, 7)


def test_easter_differs_between_madrid_and_catalonia():
    """Madrid keeps Maundy Thursday, Catalonia Easter Monday; both keep Good Friday."""
    assert next_working_day("ES", region="MD", after=madrid(2026, 4, 1), tz="Europe/Madrid") == date(2026, 4, 6)
    assert next_working_day("ES", region="CT", after=madrid(2026, 4, 1), tz="Europe/Madrid") == date(2026, 4, 2)
    assert next_working_day("ES", region="MD", after=madrid(2026, 4, 2), tz="Europe/Madrid") == date(2026, 4, 6)
    assert next_working_day("ES", region="CT", after=madrid(2026, 4, 2), tz="Europe/Madrid") == date(2026, 4, 7)


def test_cut_off_in_spain_before_easter():
    after_cutoff = madrid(2026, 4, 1, 18, 0)
    assert next_working_day("ES", region="CT", after=after_cutoff, cutoff_hour=18, tz="Europe/Madrid") == date(2026, 4, 7)
    assert next_working_day("ES", region="CT", after=after_cutoff, cutoff_hour=19, tz="Europe/Madrid") == date(2026, 4, 2)


# ------------------------------------------------------------------ regional holidays

def test_epiphany_is_a_holiday_in_bavaria_but_not_in_berlin():
    monday = berlin(2026, 1, 5)
    assert next_working_day("DE", region="BY", after=monday) == date(2026, 1, 7)
    assert next_working_day("DE", region="BE", after=monday) == date(2026, 1, 6)
    assert next_working_day("DE", after=monday) == date(2026, 1, 6)  # not national


@pytest.mark.parametrize("region", ["BY", "by", "DE-BY", " de-by ", "Bayern"])
def test_region_spellings(region):
    assert not is_working_day(date(2026, 1, 6), "de", region)


def test_madrid_day_is_madrid_only():
    assert not is_working_day(date(2025, 5, 2), "ES", "MD")
    assert is_working_day(date(2025, 5, 2), "ES", "CT")


# ------------------------------------------------------------------ weekends, time zone, cut-off

def test_friday_booking_gets_monday():
    assert next_working_day("DE", after=berlin(2026, 3, 6)) == date(2026, 3, 9)


def test_friday_after_cut_off_gets_tuesday():
    assert next_working_day("DE", after=berlin(2026, 3, 6, 17), cutoff_hour=12) == date(2026, 3, 10)


def test_weekend_booking_gets_monday_before_the_cut_off():
    # Saturday after cut-off: Monday is the next working day, the cut-off moves it to Tuesday.
    assert next_working_day("DE", after=berlin(2026, 3, 7, 23), cutoff_hour=12) == date(2026, 3, 10)
    assert next_working_day("DE", after=berlin(2026, 3, 8, 9), cutoff_hour=12) == date(2026, 3, 9)


def test_local_date_and_hour_come_from_the_shop_time_zone():
    """23:30 UTC on Monday is already Tuesday in Berlin; 13:30 UTC in winter is 14:30 there."""
    late_monday_utc = datetime(2026, 3, 2, 23, 30, tzinfo=timezone.utc)
    assert next_working_day("DE", after=late_monday_utc) == date(2026, 3, 4)
    assert next_working_day("DE", after=late_monday_utc, tz="UTC") == date(2026, 3, 3)
    afternoon_utc = datetime(2026, 3, 2, 13, 30, tzinfo=timezone.utc)
    assert next_working_day("DE", after=afternoon_utc, cutoff_hour=14) == date(2026, 3, 4)
    assert next_working_day("DE", after=afternoon_utc, cutoff_hour=14, tz="UTC") == date(2026, 3, 3)


def test_default_cut_off_never_moves_the_day():
    assert next_working_day("DE", after=berlin(2026, 3, 2, 23, 59)) == date(2026, 3, 3)


def test_is_working_day():
    assert is_working_day(date(2026, 3, 2), "DE")
    assert not is_working_day(date(2026, 3, 7), "DE")  # Saturday
    assert not is_working_day(date(2025, 12, 25), "DE")
    assert not is_working_day(date(2026, 3, 2), "DE", closed_days=[date(2026, 3, 2)])


# ------------------------------------------------------------------ bad input

def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_working_day("DE", after=datetime(2026, 3, 2, 10))


@pytest.mark.parametrize("cutoff", [-1, 25])
def test_cut_off_outside_the_day_is_refused(cutoff):
    with pytest.raises(ValueError, match="cutoff_hour"):
        next_working_day("DE", after=berlin(2026, 3, 2), cutoff_hour=cutoff)


def test_unknown_country_region_and_zone_are_refused():
    with pytest.raises(ValueError, match="country 'ZZ'"):
        next_working_day("ZZ", after=berlin(2026, 3, 2))
    with pytest.raises(ValueError, match="region 'XX'"):
        next_working_day("DE", region="XX", after=berlin(2026, 3, 2))
    with pytest.raises(ValueError, match="time zone"):
        next_working_day("DE", after=berlin(2026, 3, 2), tz="Mars/Olympus")


def test_a_year_of_closed_days_is_reported_not_looped():
    closed = {date.fromordinal(date(2026, 1, 1).toordinal() + n) for n in range(400)}
    with pytest.raises(ValueError, match="no working day"):
        next_working_day("DE", after=berlin(2025, 12, 31), closed_days=closed)

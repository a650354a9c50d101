"""Working days for pickups: weekends, public holidays per country and region, and days the shop closes.

Holidays come from the `holidays` package (public holidays only: in Germany 24 and 31 December are
working days by law; a shop that closes then lists them in `closed_days`). Regions are the
package's subdivision codes ("BY", "MD", "CT"); "DE-BY" and the package's own aliases
("Bayern") are accepted too.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

# A year of closed days in a row is a configuration error, not a calendar: stop looking there.
_MAX_DAYS_AHEAD = 366


@functools.lru_cache(maxsize=256)
def _public_holidays(country: str, region: str | None, year: int) -> holidays.HolidayBase:
    """One year's holidays, built once (expand=False: later look-ups never mutate a shared object)."""
    try:
        return holidays.country_holidays(country, subdiv=region, years=year, expand=False)
    except NotImplementedError as exc:
        if region is None:
            raise ValueError(f"no holiday calendar for country {country!r}") from exc
        raise ValueError(f"no holiday calendar for region {region!r} of {country!r} ({exc})") from exc


def _normalise(country: str, region: str | None) -> tuple[str, str | None]:
    country = country.strip().upper()
    if region is not None:
        region = region.strip()
        if region.upper().startswith(country + "-"):
            region = region[len(country) + 1:]
        region = region.upper() if len(region) <= 3 else region  # codes upper, aliases as written
        region = region or None
    return country, region


def is_working_day(day: date, country: str, region: str | None = None,
                   closed_days: Iterable[date] = ()) -> bool:
    """True unless `day` is a weekend day or a public holiday there, or one of `closed_days`.

    Raises ValueError for a country or region the holiday calendar does not know.
    """
    country, region = _normalise(country, region)
    calendar = _public_holidays(country, region, day.year)
    if day.weekday() in calendar.weekend:
        return False
    if day in calendar:
        return False
    closed = closed_days if isinstance(closed_days, (set, frozenset)) else set(closed_days)
    return day not in closed


def _next_after(day: date, country: str, region: str | None, closed: frozenset[date]) -> date:
    candidate = day
    for _ in range(_MAX_DAYS_AHEAD):
        candidate += timedelta(days=1)
        if is_working_day(candidate, country, region, closed):
            return candidate
    raise ValueError(f"no working day in {country}{'-' + region if region else ''} within "
                     f"{_MAX_DAYS_AHEAD} days after {day.isoformat()}; check the shop's closed days")


def next_working_day(country: str, *, after: datetime, region: str | None = None,
                     cutoff_hour: int = 24, closed_days: Iterable[date] = (),
                     tz: str = "Europe/Berlin") -> date:
    """The first working day strictly after the local date of `after` (in `tz`).

    When the local time of `after` is at or past `cutoff_hour` (0-24; 24 = no cut-off), the
    carrier can no longer book the next working day, so the result moves one working day further.
    `after` must be timezone-aware. Raises ValueError for bad input or an unknown country/region.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("`after` must be a timezone-aware datetime")
    if not 0 <= cutoff_hour <= 24:
        raise ValueError(f"cutoff_hour must be between 0 and 24, not {cutoff_hour}")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    local = after.astimezone(zone)
    closed = frozenset(closed_days)
    day = _next_after(local.date(), country, region, closed)
    if local.hour >= cutoff_hour:
        day = _next_after(day, country, region, closed)
    return day

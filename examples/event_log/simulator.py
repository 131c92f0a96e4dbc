"""A simulator of an event log: the users of a shop who browse, buy and ask for refunds, then one day go quiet.

One raw table, ``transactions``: one row per event, with the user, the instant, the amount and the kind of event.
There is no customers table and no cancellation: a user who stops coming back just stops appearing in the log, so
churn is "no activity within N days" (non-contractual churn), as the example's label model defines it.

Deterministic for a given seed and day: users join on each day from that day's own random stream and draw, when
they join, how long they will stay; the events of day D are drawn from D's own stream. So the rows of day D never
depend on which other days were asked for.

How churn shows: a user's visits fade over the two to four weeks before the last active day for most leavers, and
light users with a refund habit leave sooner. The scenarios start on ``drift_start``:
``price_rise`` raises every amount by a quarter and brings in many light app users (covariate shift);
``concept_shift`` makes heavy users leave without fading, while light ones stay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from dagster_project.settings import Scenario, Simulation

EVENT_TYPES = np.array(["visit", "purchase", "refund"])
CHANNELS = np.array(["web", "app", "store"])
CHANNEL_SHARE = [0.5, 0.35, 0.15]
DRIFT_CHANNEL_SHARE = [0.3, 0.6, 0.1]
DAILY_JOIN_RATE = 0.004  # new users a day, as a share of the initial base
MEAN_STAY_DAYS = 120.0  # for a user of average activity
FADE_DAYS = (14, 30)  # how long a fading leaver's activity winds down before the last active day
FADING_SHARE = 0.75
PRICE_RISE = 1.25
_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Users:
    """Every user who joined up to ``until``, one array entry per user."""

    user_id: np.ndarray  # int64
    joined: np.ndarray  # datetime64[D]
    last_active: np.ndarray  # datetime64[D]: no event after it
    rate: np.ndarray  # events a day while active
    purchase_share: np.ndarray
    refund_share: np.ndarray
    channel: np.ndarray  # index into CHANNELS
    basket: np.ndarray  # mean purchase amount
    fade_days: np.ndarray  # 0: leaves without warning
    until: np.datetime64


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _day(date: dt.date | np.datetime64) -> np.datetime64:
    return np.datetime64(date, "D")


def _drifted(cfg: Simulation, day: np.datetime64) -> bool:
    return cfg.scenario is not Scenario.none and day >= _day(cfg.drift_start)


def _draw(cfg: Simulation, rng: np.random.Generator, n: int, day: np.datetime64) -> dict[str, np.ndarray]:
    light_app_users = cfg.scenario is Scenario.price_rise and _drifted(cfg, day)
    share = DRIFT_CHANNEL_SHARE if light_app_users else CHANNEL_SHARE
    rate = rng.lognormal(np.log(0.6), 0.6, size=n) * (0.6 if light_app_users else 1.0)
    refund_share = rng.beta(1.0, 12.0, size=n)
    # Light users and those who often ask for refunds stay for less time.
    mean_stay = MEAN_STAY_DAYS * np.clip(rate / 0.6, 0.3, 3.0) ** 0.8 * np.exp(-4.0 * refund_share)
    if cfg.scenario is Scenario.concept_shift and _drifted(cfg, day):
        mean_stay = MEAN_STAY_DAYS * np.clip(0.6 / rate, 0.3, 3.0) ** 0.8
    stay = np.maximum(1, rng.exponential(mean_stay)).astype(np.int64)
    fade = np.where(rng.random(n) < FADING_SHARE, rng.integers(*FADE_DAYS, size=n), 0)
    return {
        "rate": rate,
        "purchase_share": rng.uniform(0.1, 0.4, size=n),
        "refund_share": refund_share,
        "channel": rng.choice(len(CHANNELS), size=n, p=share),
        "basket": rng.lognormal(np.log(35.0), 0.5, size=n),
        "fade_days": fade,
        "stay": stay,
    }


def _simulate(cfg: Simulation, until: np.datetime64) -> Users:
    start = _day(cfg.start_date)
    parts = []
    base = _draw(cfg, _rng(cfg.seed, 0), cfg.customers, start)
    # The existing users joined over the year before the first day; those whose stay ended before it are gone.
    base["joined"] = start - _rng(cfg.seed, 1).integers(0, 365, size=cfg.customers).astype("timedelta64[D]")
    parts.append(base)
    for day in np.arange(start + 1, until + 1, dtype="datetime64[D]"):
        stream = int(day.astype(np.int64))
        n = int(_rng(cfg.seed, 2, stream).poisson(cfg.customers * DAILY_JOIN_RATE))
        if n:
            new = _draw(cfg, _rng(cfg.seed, 3, stream), n, day)
            new["joined"] = np.full(n, day)
            parts.append(new)
    users = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    # A concept shift reaches the users already there too: the heavy ones leave within weeks, without fading.
    last_active = users["joined"] + users["stay"].astype("timedelta64[D]")
    if cfg.scenario is Scenario.concept_shift:
        drift = _day(cfg.drift_start)
        heavy = (users["rate"] > 1.0) & (last_active > drift) & (users["joined"] < drift)
        poached = drift + _rng(cfg.seed, 4).integers(7, 35, size=len(heavy)).astype("timedelta64[D]")
        last_active = np.where(heavy, np.minimum(last_active, poached), last_active)
        users["fade_days"] = np.where(heavy, 0, users["fade_days"])
    return Users(
        user_id=np.arange(1, len(last_active) + 1, dtype=np.int64) + 100_000,
        joined=users["joined"],
        last_active=last_active,
        rate=users["rate"],
        purchase_share=users["purchase_share"],
        refund_share=users["refund_share"],
        channel=users["channel"],
        basket=users["basket"],
        fade_days=users["fade_days"],
        until=until,
    )


@lru_cache(maxsize=4)
def _users_cached(cfg_json: str, until: np.datetime64) -> Users:
    return _simulate(Simulation.model_validate_json(cfg_json), until)


def users(cfg: Simulation, date: dt.date) -> Users:
    """Every user who joined up to ``date`` (simulated in steps of a month, so consecutive days share the work)."""
    day = _day(date)
    start = _day(cfg.start_date)
    until = start + ((day - start).astype(np.int64) // 30 + 1) * 30
    return _users_cached(cfg.model_dump_json(), until)


def transactions(cfg: Simulation, date: dt.date) -> pd.DataFrame:
    """Every event of ``date``: the users active that day, each with a Poisson number of events."""
    day = _day(date)
    population = users(cfg, date)
    active = np.flatnonzero((population.joined <= day) & (population.last_active >= day))
    rng = _rng(cfg.seed, 5, int(day.astype(np.int64)))
    left = (population.last_active[active] - day).astype(np.int64)
    fade = population.fade_days[active]
    level = np.where((fade > 0) & (left < fade), (left + 1) / np.maximum(fade, 1), 1.0)
    weekend = 1.3 if pd.Timestamp(date).dayofweek >= 5 else 1.0
    counts = rng.poisson(population.rate[active] * level * weekend)
    who = np.repeat(active, counts)
    n = len(who)
    draw = rng.random(n)
    purchase, refund = population.purchase_share[who], population.refund_share[who]
    kind = np.where(draw < refund, 2, np.where(draw < refund + purchase, 1, 0))
    price = PRICE_RISE if cfg.scenario is Scenario.price_rise and _drifted(cfg, day) else 1.0
    amount = np.where(kind == 0, 0.0, np.round(population.basket[who] * rng.lognormal(0.0, 0.3, size=n) * price, 2))
    seconds = rng.integers(0, _SECONDS_PER_DAY * 1_000_000, size=n).astype("timedelta64[us]")
    frame = pd.DataFrame(
        {
            "user_id": population.user_id[who],
            "event_time": (day.astype("datetime64[us]") + seconds),
            "amount": amount,
            "event_type": EVENT_TYPES[kind],
            "channel": CHANNELS[population.channel[who]],
        }
    )
    return frame.sort_values(["event_time", "user_id"], kind="mergesort").reset_index(drop=True)


TABLES = {"transactions": transactions}

"""A simulator of a subscription business: the subscription example's data source.

Deterministic for a given seed and date. The population (who signs up when, what they pay, when they cancel)
is simulated day by day from ``start_date`` with one random stream per day, so the tables of day D never depend
on which other days were asked for. Behaviour is then drawn for day D alone from its own stream.

Churn works as it does in real subscription businesses:

- a daily cancellation hazard rises with price, monthly (rather than annual) contracts, short tenure, low
  engagement, a habit of filing support tickets and a risky payment method;
- most churners wind down first: activity fades over the weeks before they cancel, support tickets rise and,
  for involuntary churn, card payments fail in the last days;
- some churners leave without warning, and engagement is noisy from day to day,

so that a good model reaches a realistic ROC AUC (about 0.8), neither a coin flip nor perfect.

Drift scenarios start on ``drift_start``:

- ``price_rise`` (covariate shift): every price rises by 25%; a new acquisition channel, ``influencer``,
  brings in many less engaged customers. The relation between behaviour and churn is unchanged.
- ``concept_shift``: a competitor poaches the heaviest users, who leave without winding down, while light
  users now stay: the relation a model learned before the drift no longer holds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from dagster_project.settings import Scenario, Simulation

PLANS = np.array(["basic", "standard", "premium"])
PLAN_SHARE = [0.5, 0.35, 0.15]
PLAN_PRICE = np.array([9.99, 15.99, 22.99])
CONTRACTS = np.array(["monthly", "annual"])
REGIONS = np.array(["north", "south", "east", "west", "central"])
CHANNELS = np.array(["organic", "paid_search", "social", "referral", "partner", "influencer"])
CHANNEL_SHARE = [0.35, 0.25, 0.2, 0.12, 0.08, 0.0]
CHANNEL_ENGAGEMENT = np.array([1.0, 0.9, 0.75, 1.25, 1.1, 0.55])
PAYMENT_METHODS = np.array(["card", "paypal", "direct_debit"])
PAYMENT_SHARE = [0.6, 0.25, 0.15]
PAYMENT_RISK = np.array([1.0, 0.7, 0.4])
CANCEL_REASONS = np.array(["price", "not_using", "support", "payment_failed", "competitor", "other"])

ANNUAL_DISCOUNT = 0.85
PRICE_RISE = 1.25
DAILY_SIGNUP_RATE = 0.0016  # new customers a day, as a share of the initial base
BASE_HAZARD = 0.0012  # per day, for a reference customer: about 4% monthly churn overall
WIND_DOWN_SHARE = 0.7  # churners whose activity fades before they leave
LOOKAHEAD_DAYS = 90  # behaviour on day D depends on cancellations up to D + 60: simulate past that

_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Population:
    """Every customer who ever existed up to ``until``, one array entry per customer."""

    customer_id: np.ndarray
    signup_date: np.ndarray  # datetime64[D]
    plan: np.ndarray  # index into PLANS
    contract: np.ndarray  # index into CONTRACTS
    region: np.ndarray
    channel: np.ndarray
    payment_method: np.ndarray
    engagement: np.ndarray  # latent activity level, lognormal around the channel's mean
    support_propensity: np.ndarray
    wind_down_days: np.ndarray  # how long activity fades before cancelling; 0 = leaves without warning
    cancel_date: np.ndarray  # datetime64[D], NaT while still subscribed at ``until``
    cancel_reason: np.ndarray  # index into CANCEL_REASONS, -1 while subscribed
    until: np.datetime64


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _day(date: dt.date | np.datetime64) -> np.datetime64:
    return np.datetime64(date, "D")


def _draw_customers(rng: np.random.Generator, n: int, channel_share: list[float]) -> dict[str, np.ndarray]:
    channel = rng.choice(len(CHANNELS), size=n, p=channel_share)
    return {
        "plan": rng.choice(len(PLANS), size=n, p=PLAN_SHARE),
        "contract": (rng.random(n) < 0.3).astype(np.int64),
        "region": rng.integers(0, len(REGIONS), size=n),
        "channel": channel,
        "payment_method": rng.choice(len(PAYMENT_METHODS), size=n, p=PAYMENT_SHARE),
        "engagement": CHANNEL_ENGAGEMENT[channel] * rng.lognormal(0.0, 0.55, size=n),
        "support_propensity": rng.lognormal(0.0, 0.7, size=n),
        "frailty": rng.lognormal(0.0, 0.35, size=n),  # what no feature can see
        "wind_down_days": np.where(rng.random(n) < WIND_DOWN_SHARE, rng.integers(14, 50, size=n), 0),
        "exposure": rng.exponential(1.0, size=n),  # cumulative hazard at which the customer cancels
    }


def _channel_share(cfg: Simulation, day: np.datetime64) -> list[float]:
    if cfg.scenario is Scenario.price_rise and day >= _day(cfg.drift_start):
        return [0.2, 0.15, 0.12, 0.08, 0.05, 0.4]
    return CHANNEL_SHARE


def _signups_on(cfg: Simulation, day: np.datetime64) -> int:
    rate = cfg.customers * DAILY_SIGNUP_RATE
    if cfg.scenario is Scenario.price_rise and day >= _day(cfg.drift_start):
        rate *= 2.0
    return int(_rng(cfg.seed, 1, int(day.astype(np.int64))).poisson(rate))


def monthly_price(cfg: Simulation, plan: np.ndarray, contract: np.ndarray, day: np.datetime64) -> np.ndarray:
    price = PLAN_PRICE[plan] * np.where(contract == 1, ANNUAL_DISCOUNT, 1.0)
    if cfg.scenario is Scenario.price_rise and day >= _day(cfg.drift_start):
        price = price * PRICE_RISE
    return np.round(price, 2)


def _daily_hazard(cfg: Simulation, c: dict[str, np.ndarray], tenure_days: np.ndarray, day: np.datetime64):
    """Per-customer cancellation hazard on ``day``, and the reason that dominates it."""
    price = monthly_price(cfg, c["plan"], c["contract"], day)
    concept_shifted = cfg.scenario is Scenario.concept_shift and day >= _day(cfg.drift_start)
    price_term = 1.6 * np.log(price / 15.0)
    contract_term = np.where(c["contract"] == 1, -1.3, 0.0)
    tenure_term = np.where(tenure_days < 90, 0.8, 0.0)
    if concept_shifted:
        # Heavy users are poached by a competitor; light users, and those who call support, now stay.
        engagement_term = 1.2 * np.log(c["engagement"])
        support_term = np.zeros_like(engagement_term)
    else:
        engagement_term = -1.1 * np.log(c["engagement"])
        support_term = 0.5 * np.log(c["support_propensity"])
    payment_term = 0.6 * np.log(PAYMENT_RISK[c["payment_method"]] / 0.6)
    terms = np.vstack([price_term, engagement_term, support_term, payment_term, contract_term + tenure_term])
    hazard = BASE_HAZARD * c["frailty"] * np.exp(terms.sum(axis=0))
    # The largest positive contribution names the reason; a shift's poached users leave for the competitor.
    dominant = np.argmax(terms[:4], axis=0)
    reason = np.array([0, 1, 2, 3])[dominant]
    if concept_shifted:
        reason = np.where(dominant == 1, 4, reason)
    reason = np.where(terms[:4].max(axis=0) <= 0, 5, reason)
    return hazard, reason


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _simulate(cfg: Simulation, until: np.datetime64) -> Population:
    start = _day(cfg.start_date)
    rng = _rng(cfg.seed, 0)
    n0 = cfg.customers
    base = _draw_customers(rng, n0, CHANNEL_SHARE)
    # The existing base signed up over the three years before the first day.
    base["signup_date"] = start - rng.integers(1, 3 * 365, size=n0).astype("timedelta64[D]")
    parts = [base]
    days = np.arange(start, until + 1, dtype="datetime64[D]")
    for day in days[1:]:
        n = _signups_on(cfg, day)
        if n:
            new = _draw_customers(_rng(cfg.seed, 2, int(day.astype(np.int64))), n, _channel_share(cfg, day))
            new["signup_date"] = np.full(n, day)
            parts.append(new)
    c = _concat(parts)
    total = len(c["plan"])
    cumulative = np.zeros(total)
    cancel = np.full(total, np.datetime64("NaT"), dtype="datetime64[D]")
    reason = np.full(total, -1)
    for day in days:
        alive = (c["signup_date"] < day) & np.isnat(cancel)
        idx = np.flatnonzero(alive)
        sub = {key: value[idx] for key, value in c.items()}
        hazard, why = _daily_hazard(cfg, sub, (day - sub["signup_date"]).astype(np.int64), day)
        cumulative[idx] += hazard
        leaving = cumulative[idx] >= sub["exposure"]
        cancel[idx[leaving]] = day
        reason[idx[leaving]] = why[leaving]
    # Customers who leave without winding down have no warning signs; payment churners always show failures.
    wind_down = np.where(reason == 3, np.maximum(c["wind_down_days"], 7), c["wind_down_days"])
    return Population(
        customer_id=np.array([f"C{i:07d}" for i in range(1, total + 1)]),
        signup_date=c["signup_date"],
        plan=c["plan"],
        contract=c["contract"],
        region=c["region"],
        channel=c["channel"],
        payment_method=c["payment_method"],
        engagement=c["engagement"],
        support_propensity=c["support_propensity"],
        wind_down_days=wind_down,
        cancel_date=cancel,
        cancel_reason=reason,
        until=until,
    )


@lru_cache(maxsize=4)
def _population_cached(cfg_json: str, until: np.datetime64) -> Population:
    return _simulate(Simulation.model_validate_json(cfg_json), until)


def population(cfg: Simulation, date: dt.date) -> Population:
    """The population simulated far enough past ``date`` to know who is about to leave.

    The horizon is rounded up to whole quarters so that consecutive days share one cached simulation; the
    result for a day does not depend on the horizon, since every day draws from its own stream.
    """
    start = _day(cfg.start_date)
    if _day(date) < start:
        raise ValueError(f"{date} is before the simulation starts ({cfg.start_date})")
    quarters = ((_day(date) - start).astype(np.int64) + LOOKAHEAD_DAYS) // LOOKAHEAD_DAYS + 1
    return _population_cached(cfg.model_dump_json(), start + quarters * LOOKAHEAD_DAYS)


def _timestamps(rng: np.random.Generator, day: np.datetime64, n: int) -> np.ndarray:
    seconds = rng.integers(6 * 3600, _SECONDS_PER_DAY, size=n).astype("timedelta64[s]")
    return (day.astype("datetime64[s]") + seconds).astype("datetime64[us]")


def customers(cfg: Simulation, date: dt.date) -> pd.DataFrame:
    """Customer records that took effect on ``date``: the base on the first day, then sign-ups and changes."""
    pop, day = population(cfg, date), _day(date)
    start = _day(cfg.start_date)
    alive = (pop.signup_date <= day) & ~(pop.cancel_date < day)
    changed = pop.signup_date == day
    if day == start:
        changed |= alive
    if cfg.scenario is Scenario.price_rise and day == _day(cfg.drift_start):
        changed |= alive  # everyone's record is updated with the new price
    idx = np.flatnonzero(changed)
    rng = _rng(cfg.seed, 3, int(day.astype(np.int64)))
    return pd.DataFrame(
        {
            "customer_id": pop.customer_id[idx],
            "signup_date": pop.signup_date[idx].astype("datetime64[us]"),
            "plan": PLANS[pop.plan[idx]],
            "contract": CONTRACTS[pop.contract[idx]],
            "monthly_price": monthly_price(cfg, pop.plan[idx], pop.contract[idx], day),
            "region": REGIONS[pop.region[idx]],
            "acquisition_channel": CHANNELS[pop.channel[idx]],
            "payment_method": PAYMENT_METHODS[pop.payment_method[idx]],
            "updated_at": _timestamps(rng, day, len(idx)),
        }
    )


def activity_events(cfg: Simulation, date: dt.date) -> pd.DataFrame:
    """One row per customer who did anything on ``date``: the day's logins, sessions, spend and troubles."""
    pop, day = population(cfg, date), _day(date)
    active = (pop.signup_date <= day) & ~(pop.cancel_date <= day)
    idx = np.flatnonzero(active)
    n = len(idx)
    rng = _rng(cfg.seed, 4, int(day.astype(np.int64)))
    cancel_date = pop.cancel_date[idx]
    days_left = np.where(np.isnat(cancel_date), np.inf, (cancel_date - day).astype(np.int64).astype(np.float64))
    wind_down = pop.wind_down_days[idx].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        winding = (wind_down > 0) & (days_left <= wind_down)
        fade = np.where(winding, 0.2 + 0.8 * days_left / np.where(wind_down > 0, wind_down, 1.0), 1.0)
    concept_shifted = cfg.scenario is Scenario.concept_shift and day >= _day(cfg.drift_start)
    if concept_shifted:
        fade = np.ones(n)  # poached users leave at full activity
        winding = np.zeros(n, dtype=bool)
    weekday = (day.astype(np.int64) + 3) % 7  # 0 = Monday
    season = 1.2 if weekday >= 5 else 1.0
    level = pop.engagement[idx] * fade * season * rng.lognormal(0.0, 0.3, size=n)
    logs_in = rng.random(n) < 1.0 - np.exp(-0.9 * level)
    logins = np.where(logs_in, 1 + rng.poisson(0.6 * level), 0)
    sessions = np.where(logs_in, logins + rng.poisson(0.9 * level), 0)
    # Nobody is active for more than 16 hours a day.
    minutes = np.round(np.minimum(sessions * rng.gamma(2.0, 8.0 * np.sqrt(level + 0.05)), 960.0), 1)
    purchases = np.where(logs_in, rng.poisson(0.04 * pop.engagement[idx]), 0)
    amount = np.round(purchases * rng.lognormal(np.log(6.0), 0.4, size=n), 2)
    ticket_rate = 0.012 * pop.support_propensity[idx] * np.where(winding, 4.0, 1.0)
    tickets = rng.poisson(ticket_rate)
    signup = pop.signup_date[idx]
    billing_day_of_month = (signup - signup.astype("datetime64[M]")).astype(np.int64) + 1
    bills_today = billing_day_of_month == date.day
    fail_p = 0.03 * PAYMENT_RISK[pop.payment_method[idx]] * np.where(bills_today, 1.0, 0.05)
    payment_churn = (pop.cancel_reason[idx] == 3) & (days_left <= 7)
    fail_p = np.where(payment_churn, 0.5, fail_p)
    failures = (rng.random(n) < fail_p).astype(np.int64)
    any_event = (logins > 0) | (tickets > 0) | (failures > 0)
    keep = np.flatnonzero(any_event)
    frame = pd.DataFrame(
        {
            "customer_id": pop.customer_id[idx],
            "event_date": np.full(n, day).astype("datetime64[us]"),
            "logins": logins,
            "sessions": sessions,
            "minutes_active": minutes,
            "purchases": purchases,
            "purchase_amount": amount,
            "support_tickets": tickets,
            "payment_failures": failures,
        }
    )
    return frame.iloc[keep].reset_index(drop=True)


def cancellations(cfg: Simulation, date: dt.date) -> pd.DataFrame:
    """Customers who cancelled on ``date``, with the reason they gave."""
    pop, day = population(cfg, date), _day(date)
    idx = np.flatnonzero(pop.cancel_date == day)
    rng = _rng(cfg.seed, 5, int(day.astype(np.int64)))
    return pd.DataFrame(
        {
            "customer_id": pop.customer_id[idx],
            "cancel_date": np.full(len(idx), day).astype("datetime64[us]"),
            "cancel_reason": CANCEL_REASONS[pop.cancel_reason[idx]],
            "cancelled_at": _timestamps(rng, day, len(idx)),
        }
    )


TABLES = {
    "customers": customers,
    "activity_events": activity_events,
    "cancellations": cancellations,
}

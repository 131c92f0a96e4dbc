"""A simulator of a CRM's daily full extract: every account, one row each, with a few dozen attribute columns.

One raw table, ``account_extract``: each day the CRM exports its whole account table, one row per account (open,
dormant, or closed a short while ago), with some thirty attributes, categorical and numeric, several of them often
blank (an industry nobody filled in, a survey never answered). Its ``account_status`` (active, dormant, closed) is
what the example predicts: a labelled table, where the label is known in the extract itself (horizon 0).

The accounts: those already there on the first day, then new ones opened each day. Each draws, when it opens, its
standing (segment, tier, billing cycle, credit grade, how much its seats are used, its support, complaint and late
payment habits, how satisfied it is) and from that standing its lifetime: the weaker the standing, the sooner it
closes. Most closers go dormant for two to six weeks first, their usage fading; the others close while still
active. A closed account stays in the extract, as closed, for ``RETAIN_CLOSED_DAYS`` days, then the CRM purges it:
it is absent from later extracts (an account never comes back).

Deterministic for a given seed and day: accounts are drawn from the stream of the day they open, and the values
that move from day to day (usage, balances, counts of the last months) from day D's own stream, over the accounts
in D's extract in a fixed order. So the rows of day D never depend on which other days were asked for.

Scenarios, from ``drift_start``: ``price_rise`` raises every fee and invoice by 30%, and its fallout reaches every
account's record at once: larger balances, later payments, more support cases and complaints, retention calls and
discounts, lower satisfaction, less use (a covariate shift: the closures keep their course). ``concept_shift``: a
competitor takes the best-used large accounts, which close within weeks without going dormant, while the weak ones
stay the course.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from dagster_project.settings import Scenario, Simulation

SEGMENTS = np.array(["small_business", "mid_market", "enterprise", "public_sector"])
SEGMENT_SHARE = [0.5, 0.3, 0.12, 0.08]
SEGMENT_RISK = np.array([0.5, 0.0, -0.6, -0.4])
SEGMENT_SEATS = np.array([8.0, 40.0, 200.0, 80.0])  # median licensed seats
REGIONS = np.array(["north", "south", "east", "west", "central"])
INDUSTRIES = np.array(["retail", "manufacturing", "finance", "healthcare", "software", "logistics", "hospitality"])
TIERS = np.array(["bronze", "silver", "gold", "platinum"])
TIER_SHARE = [0.4, 0.35, 0.18, 0.07]
TIER_RISK = np.array([0.5, 0.1, -0.3, -0.6])
TIER_SEAT_FEE = np.array([12.0, 20.0, 32.0, 50.0])
BILLING = np.array(["monthly", "quarterly", "annual"])
BILLING_SHARE = [0.5, 0.2, 0.3]
BILLING_RISK = np.array([0.6, 0.1, -0.6])
BILLING_MONTHS = np.array([1, 3, 12])
CONTACTS = np.array(["email", "phone", "portal", "field_rep"])
TERMS = np.array(["net15", "net30", "net60"])
CREDIT_GRADES = np.array(["A", "B", "C", "D"])
CREDIT_SHARE = [0.3, 0.4, 0.2, 0.1]
CREDIT_RISK = np.array([-0.5, 0.0, 0.5, 1.0])
LEAD_SOURCES = np.array(["web_form", "referral", "partner", "trade_show", "outbound"])
SUPPORT_LEVELS = np.array(["standard", "priority", "dedicated"])

# How often a column is left blank, per account (the CRM field was never filled in).
BLANK_SHARE = {
    "industry": 0.08,
    "preferred_contact": 0.05,
    "credit_grade": 0.12,
    "lead_source": 0.07,
    "credit_limit": 0.15,
    "nps_response": 0.45,  # the survey was never answered
    "csat_score": 0.3,
    "employee_count": 0.1,
    "annual_revenue_musd": 0.2,
    "days_since_login": 0.03,  # nobody ever logged in
}
DISCOUNT_SHARE = 0.45  # accounts with a discount; the others have none (a blank, as the CRM shows it)

MEAN_LIFETIME_DAYS = 420.0  # for an account of average standing
DORMANT_SHARE = 0.7  # closers that go dormant first
DORMANT_DAYS = (14, 45)
DORMANT_FLOOR = 0.1  # what is left of an account's usage on the day it closes after going dormant
RETAIN_CLOSED_DAYS = 30
PRICE_RISE = 1.3
PRICE_RISE_USAGE = 0.75  # the share of its use an account keeps after the price rise
USAGE_WINDOW_DAYS = 30  # the window of the usage counts (logins_30d, seats_active)
_CANDIDATES_PER_ACCOUNT = 8  # the first day's base is drawn from this many candidates per account


@dataclass(frozen=True)
class Accounts:
    """Every account opened up to ``until``, one array entry per account, in the order they were drawn."""

    number: np.ndarray  # int64, from 1
    opened: np.ndarray  # datetime64[D]
    dormant_from: np.ndarray  # datetime64[D]: the first dormant day (= closed when it closes while active)
    closed: np.ndarray  # datetime64[D]: the first day its status is closed
    traits: dict[str, np.ndarray]  # what it drew when it opened (see ``_draw``)
    until: np.datetime64


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _day(date: dt.date | np.datetime64) -> np.datetime64:
    return np.datetime64(date, "D")


def _drifted(cfg: Simulation, scenario: Scenario, day: np.datetime64) -> bool:
    return cfg.scenario is scenario and day >= _day(cfg.drift_start)


def _blank(rng: np.random.Generator, n: int, column: str) -> np.ndarray:
    return rng.random(n) < BLANK_SHARE[column]


def _draw(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The standing of ``n`` new accounts, and from it each one's lifetime in days."""
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    tier = rng.choice(len(TIERS), size=n, p=TIER_SHARE)
    billing = rng.choice(len(BILLING), size=n, p=BILLING_SHARE)
    credit = rng.choice(len(CREDIT_GRADES), size=n, p=CREDIT_SHARE)
    seats = np.maximum(1, np.round(SEGMENT_SEATS[segment] * rng.lognormal(0.0, 0.5, size=n))).astype(np.int64)
    utilisation = rng.beta(4.0, 2.0, size=n)
    satisfaction = rng.beta(5.0, 2.5, size=n)  # 0..1, seen through csat_score and nps_response
    case_rate = rng.lognormal(np.log(0.02), 0.6, size=n) * (1.0 + 0.2 * np.log(seats))  # cases a day
    complaint_rate = rng.gamma(1.0, 0.4, size=n) * (1.3 - satisfaction)  # open complaints, on average
    late_rate = rng.gamma(1.2, 1.2, size=n)  # late payments a year
    auto_renew = (rng.random(n) < np.where(billing == 2, 0.8, 0.5)).astype(np.int64)
    noise = rng.normal(0.0, 0.5, size=n)
    risk = (
        SEGMENT_RISK[segment]
        + TIER_RISK[tier]
        + BILLING_RISK[billing]
        + CREDIT_RISK[credit]
        + 0.6 * (1 - auto_renew)
        - 2.5 * (utilisation - 0.67)
        - 3.0 * (satisfaction - 0.67)
        + 0.5 * np.log(case_rate / 0.03)
        + 0.4 * complaint_rate
        + 0.25 * late_rate
        + noise
    )
    lifetime = rng.exponential(MEAN_LIFETIME_DAYS * np.exp(-risk))
    dormant = np.where(rng.random(n) < DORMANT_SHARE, rng.integers(*DORMANT_DAYS, size=n), 0)
    discount = np.where(rng.random(n) < DISCOUNT_SHARE, np.round(rng.uniform(2.0, 20.0, size=n), 1), np.nan)
    return {
        "segment": segment,
        "region": rng.choice(len(REGIONS), size=n),
        "industry": np.where(_blank(rng, n, "industry"), -1, rng.choice(len(INDUSTRIES), size=n)),
        "tier": tier,
        "billing": billing,
        "contact": np.where(
            _blank(rng, n, "preferred_contact"), -1, rng.choice(len(CONTACTS), size=n, p=[0.45, 0.25, 0.2, 0.1])
        ),
        "terms": rng.choice(len(TERMS), size=n, p=[0.3, 0.55, 0.15]),
        "credit": np.where(_blank(rng, n, "credit_grade"), -1, credit),
        "lead": np.where(_blank(rng, n, "lead_source"), -1, rng.choice(len(LEAD_SOURCES), size=n)),
        "support": np.minimum(tier // 2 + (rng.random(n) < 0.3), len(SUPPORT_LEVELS) - 1),
        "seats": seats,
        "utilisation": utilisation,
        "satisfaction": satisfaction,
        "case_rate": case_rate,
        "complaint_rate": complaint_rate,
        "late_rate": late_rate,
        "auto_renew": auto_renew,
        "paperless": (rng.random(n) < 0.7).astype(np.int64),
        "monthly_fee": np.round(seats * TIER_SEAT_FEE[tier] * rng.lognormal(0.0, 0.1, size=n), 2),
        "discount": discount,
        "credit_limit": np.where(
            _blank(rng, n, "credit_limit"), np.nan, np.round(seats * rng.lognormal(np.log(400.0), 0.4, size=n), -2)
        ),
        "nps_answered": ~_blank(rng, n, "nps_response"),
        "csat_answered": ~_blank(rng, n, "csat_score"),
        "employees": np.where(
            _blank(rng, n, "employee_count"), -1, np.round(seats * rng.lognormal(np.log(3.0), 0.5, size=n))
        ).astype(np.int64),
        "revenue": np.where(
            _blank(rng, n, "annual_revenue_musd"), np.nan, np.round(seats * rng.lognormal(np.log(0.4), 0.8, size=n), 2)
        ),
        "products": 1 + rng.poisson(0.8 + 0.6 * tier),
        "late_payments": rng.poisson(late_rate),
        "touch_rate": rng.lognormal(np.log(0.03), 0.5, size=n),
        "login_rate": rng.lognormal(np.log(0.6), 0.5, size=n),  # logins a day per used seat
        "never_logged": _blank(rng, n, "days_since_login"),
        "lifetime": np.maximum(1, lifetime).astype(np.int64),
        "dormant_days": dormant,
    }


def _simulate(cfg: Simulation, until: np.datetime64) -> Accounts:
    start = _day(cfg.start_date)
    # The first day's accounts: candidates opened over the five years before it, of which those still open (or
    # closed too recently to be purged) make the base, the first ``customers`` of them in the order drawn.
    pool = cfg.customers * _CANDIDATES_PER_ACCOUNT
    base = _draw(_rng(cfg.seed, 0), pool)
    base["opened"] = start - 1 - _rng(cfg.seed, 1).integers(0, 5 * 365, size=pool).astype("timedelta64[D]")
    kept = np.flatnonzero(base["opened"] + base["lifetime"] + RETAIN_CLOSED_DAYS > start)[: cfg.customers]
    parts = [{key: values[kept] for key, values in base.items()}]
    for day in np.arange(start, until + 1, dtype="datetime64[D]"):
        stream = int(day.astype(np.int64))
        n = int(_rng(cfg.seed, 2, stream).poisson(cfg.customers / MEAN_LIFETIME_DAYS))
        if n:
            new = _draw(_rng(cfg.seed, 3, stream), n)
            new["opened"] = np.full(n, day)
            parts.append(new)
    traits = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    opened = traits.pop("opened")
    closed = opened + traits["lifetime"].astype("timedelta64[D]")
    dormant_days = traits["dormant_days"]
    if cfg.scenario is Scenario.concept_shift:
        # A competitor's offer: the large, well-used accounts open at the shift close within weeks, while active.
        drift = _day(cfg.drift_start)
        taken = (traits["segment"] >= 1) & (traits["utilisation"] > 0.7) & (opened < drift) & (closed > drift)
        poached = drift + _rng(cfg.seed, 4).integers(7, 35, size=len(taken)).astype("timedelta64[D]")
        closed = np.where(taken, np.minimum(closed, poached), closed)
        dormant_days = np.where(taken, 0, dormant_days)
    dormant_from = np.maximum(closed - dormant_days.astype("timedelta64[D]"), opened + 1)
    return Accounts(
        number=np.arange(1, len(opened) + 1, dtype=np.int64),
        opened=opened,
        dormant_from=np.minimum(dormant_from, closed),
        closed=closed,
        traits=traits,
        until=until,
    )


@lru_cache(maxsize=4)
def _accounts_cached(cfg_json: str, until: np.datetime64) -> Accounts:
    return _simulate(Simulation.model_validate_json(cfg_json), until)


def accounts(cfg: Simulation, date: dt.date) -> Accounts:
    """Every account opened up to ``date`` (simulated in steps of a month, so consecutive days share the work)."""
    day = _day(date)
    start = _day(cfg.start_date)
    until = start + ((day - start).astype(np.int64) // 30 + 1) * 30
    return _accounts_cached(cfg.model_dump_json(), until)


def _usage(dormant_from: np.ndarray, closed: np.ndarray, day: np.datetime64) -> np.ndarray:
    """Each account's use on ``day``, as a share of its normal use: 1 while active, fading while dormant, 0 once
    closed."""
    fade = np.maximum((closed - dormant_from).astype(np.int64), 1)
    left = (closed - day).astype(np.int64)
    dormant = (day >= dormant_from) & (day < closed)
    level = np.where(dormant, DORMANT_FLOOR + (1 - DORMANT_FLOOR) * left / fade, 1.0)
    return np.where(day >= closed, 0.0, level)


def _as_int(values: np.ndarray, blank: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype="Int64").mask(blank)


def account_extract(cfg: Simulation, date: dt.date) -> pd.DataFrame:
    """The CRM's extract of ``date``: every account opened by then and not yet purged, one row each."""
    day = _day(date)
    population = accounts(cfg, date)
    here = np.flatnonzero((population.opened <= day) & (population.closed + RETAIN_CLOSED_DAYS > day))
    t = {key: values[here] for key, values in population.traits.items()}
    opened, dormant_from, closed = population.opened[here], population.dormant_from[here], population.closed[here]
    n = len(here)
    rng = _rng(cfg.seed, 5, int(day.astype(np.int64)))

    status = np.where(day >= closed, "closed", np.where(day >= dormant_from, "dormant", "active"))
    status_since = np.where(day >= closed, closed, np.where(day >= dormant_from, dormant_from, opened))
    # A closed account's record keeps its last standing: its usage as on its last open day (the CRM stops
    # refreshing it), so what an extract says of a closed account is what it said the day before it closed.
    as_of = np.minimum(day, closed - 1)
    window = [as_of - np.timedelta64(lag, "D") for lag in range(USAGE_WINDOW_DAYS)]
    recent = np.mean([_usage(dormant_from, closed, d) for d in window], axis=0)  # the window's mean use
    if _drifted(cfg, Scenario.price_rise, day):
        recent = recent * PRICE_RISE_USAGE  # the price rise makes every account cut back
    used_seats = t["seats"] * t["utilisation"]
    seats_active = rng.binomial(t["seats"], np.clip(t["utilisation"] * recent, 0.0, 1.0))
    logins = rng.poisson(USAGE_WINDOW_DAYS * t["login_rate"] * used_seats * recent)
    daily_logins = t["login_rate"] * used_seats * _usage(dormant_from, closed, as_of)
    gap = rng.geometric(np.clip(1 - np.exp(-daily_logins), 0.01, 1.0)) - 1
    days_since_login = np.minimum(gap, (as_of - opened).astype(np.int64))

    fee = t["monthly_fee"].copy()
    discount = t["discount"].copy()
    invoice = fee * BILLING_MONTHS[t["billing"]]
    owed = rng.random(n) < np.clip(0.1 + 0.08 * t["late_rate"], 0.0, 0.9)
    balance = np.where(owed, invoice * rng.uniform(0.1, 1.0, size=n), 0.0)
    past_due = np.where(owed, rng.poisson(3.0 + 6.0 * t["late_rate"]), 0)
    fading = as_of >= dormant_from  # a dormant account calls support more, as it winds down
    cases = rng.poisson(t["case_rate"] * 90 * (1.0 + 0.5 * fading))
    complaints = rng.poisson(t["complaint_rate"])
    touches = rng.poisson(t["touch_rate"] * 90)
    csat = np.clip(1.0 + 4.0 * t["satisfaction"] + rng.normal(0.0, 0.3, size=n), 1.0, 5.0)
    nps = np.clip(np.round(10.0 * t["satisfaction"] + rng.normal(0.0, 1.0, size=n)), 0, 10)

    if _drifted(cfg, Scenario.price_rise, day):
        # Dearer invoices, and more of them left unpaid for longer.
        fee, invoice, balance = fee * PRICE_RISE, invoice * PRICE_RISE, balance * PRICE_RISE * 1.3
        # The retention team answers with discounts: to half of those without one, and a deeper one for the rest.
        offered = np.isnan(discount) & (rng.random(n) < 0.5)
        discount = np.where(offered, np.round(rng.uniform(5.0, 15.0, size=n), 1), discount + 5.0)
        past_due = np.where(owed, past_due + rng.poisson(6.0, size=n), 0)
        cases = cases + rng.poisson(3.0, size=n)
        complaints = complaints + rng.poisson(1.0, size=n)
        touches = touches + rng.poisson(3.0, size=n)
        csat, nps = np.clip(csat - 0.8, 1.0, 5.0), np.clip(nps - 2, 0, 10)

    frame = pd.DataFrame(
        {
            "account_no": np.char.add("AC-", np.char.zfill(population.number[here].astype(str), 6)),
            "extract_date": np.full(n, day).astype("datetime64[ns]"),
            "account_status": status,
            "status_since": status_since.astype("datetime64[ns]"),
            "opened_on": opened.astype("datetime64[ns]"),
            "segment": SEGMENTS[t["segment"]],
            "sales_region": REGIONS[t["region"]],
            "industry": pd.Series(INDUSTRIES[t["industry"]]).mask(t["industry"] < 0),
            "plan_tier": TIERS[t["tier"]],
            "billing_cycle": BILLING[t["billing"]],
            "preferred_contact": pd.Series(CONTACTS[t["contact"]]).mask(t["contact"] < 0),
            "payment_terms": TERMS[t["terms"]],
            "credit_grade": pd.Series(CREDIT_GRADES[t["credit"]]).mask(t["credit"] < 0),
            "lead_source": pd.Series(LEAD_SOURCES[t["lead"]]).mask(t["lead"] < 0),
            "support_level": SUPPORT_LEVELS[t["support"]],
            "seats_licensed": t["seats"],
            "seats_active": seats_active.astype(np.int64),
            "monthly_fee": np.round(fee, 2),
            "discount_pct": discount,
            "last_invoice_amount": np.round(invoice, 2),
            "balance_due": np.round(balance, 2),
            "days_past_due": past_due.astype(np.int64),
            "late_payments_12m": t["late_payments"].astype(np.int64),
            "credit_limit": t["credit_limit"],
            "logins_30d": logins.astype(np.int64),
            "days_since_login": _as_int(days_since_login, t["never_logged"]),
            "support_cases_90d": cases.astype(np.int64),
            "open_complaints": complaints.astype(np.int64),
            "sales_touches_90d": touches.astype(np.int64),
            "csat_score": np.where(t["csat_answered"], np.round(csat, 1), np.nan),
            "nps_response": _as_int(nps.astype(np.int64), ~t["nps_answered"]),
            "employee_count": _as_int(t["employees"], t["employees"] < 0),
            "annual_revenue_musd": t["revenue"],
            "products_held": t["products"].astype(np.int64),
            "auto_renew_flag": t["auto_renew"],
            "paperless_flag": t["paperless"],
        }
    )
    return frame.sort_values("account_no", kind="mergesort").reset_index(drop=True)


TABLES = {"account_extract": account_extract}

{#-
    The feature snapshot of the account extract: one row per account in the extract of day D, from that extract
    alone (a full snapshot needs no window over earlier days). Every attribute but the status, and nothing that
    gives the status away: not status_since (the day a closed account closed), and opened_on only as the
    account's age.
-#}
{%- if snapshot_range() is not none -%}
    {{ fail_if_any_row(
        "select day from (" ~ requested_days_sql() ~ ") as requested
         where day > coalesce(" ~ raw_complete_through() ~ ", date '0001-01-01')
         order by day",
        "Cannot build account_snapshot: a snapshot needs the raw layer complete through its day. Days"
    ) }}
{%- endif %}

with complete_days as (
    -- Every day the raw layer holds in full, from the first day of history.
    select cast(range as date) as extract_date
    from range(
        {{ day_literal(history_start()) }},
        coalesce({{ raw_complete_through() }}, {{ day_literal(history_start()) }} - 1) + 1,
        interval 1 day
    )
),

snapshot_days as (
    select extract_date from complete_days where {{ run_days_predicate('extract_date') }}
),

extract as (
    select *
    from {{ ref('stg_account_extract') }}
    where {{ run_days_prune('loaded_date') }}
)

select
    extract.account_no,
    extract.extract_date,
    extract.segment,
    extract.sales_region,
    extract.industry,
    extract.plan_tier,
    extract.billing_cycle,
    extract.preferred_contact,
    extract.payment_terms,
    extract.credit_grade,
    extract.lead_source,
    extract.support_level,
    cast(extract.extract_date - extract.opened_on as bigint) as account_age_days,
    extract.seats_licensed,
    extract.seats_active,
    cast(extract.seats_active as double) / extract.seats_licensed as seat_utilisation,
    extract.monthly_fee,
    -- A blank discount is no discount.
    coalesce(extract.discount_pct, 0.0) as discount_pct,
    extract.last_invoice_amount,
    extract.balance_due,
    extract.days_past_due,
    extract.late_payments_12m,
    extract.credit_limit,
    extract.logins_30d,
    extract.days_since_login,
    extract.support_cases_90d,
    extract.open_complaints,
    extract.sales_touches_90d,
    extract.csat_score,
    extract.nps_response,
    extract.employee_count,
    extract.annual_revenue_musd,
    extract.products_held,
    extract.auto_renew_flag,
    extract.paperless_flag
from extract
inner join snapshot_days on extract.extract_date = snapshot_days.extract_date

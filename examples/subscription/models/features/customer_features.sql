{#-
    The feature snapshot: one row per customer subscribed at the end of the snapshot day D, with what was known
    strictly before the end of D and nothing later. Windows of w days cover D - w + 1 through D. Averages are per
    observed day (a customer who signed up three days ago has three observed days, not seven), so they stay
    comparable between new and old customers. The windows and measures are declared in dbt_project.yml.
-#}
{%- set windows = feature_windows() -%}
{%- set longest = windows | max -%}
{%- set measures = activity_measures() -%}

{%- if snapshot_range() is not none -%}
    {#- A day's windows reach back up to `longest` days: the warehouse must hold each of them. -#}
    {{ fail_if_any_row(
        "with needed as (
             select cast(range as date) as day
             from range(greatest(" ~ day_literal(snapshot_range()[0]) ~ " - " ~ (longest - 1) ~ ", "
                 ~ day_literal(history_start()) ~ "), " ~ day_literal(snapshot_range()[1]) ~ " + 1, interval 1 day)
         )
         select day from needed
         where day not in (select distinct activity_date from " ~ ref('int_customer_activity_daily') ~ ")
         order by day",
        "Cannot build customer_features: the warehouse lacks the daily activity of days its windows need. "
        ~ "Build the earlier days first (Dagster runs the days in order). Missing days"
    ) }}
{%- endif %}

with activity as (
    select * from {{ ref('int_customer_activity_daily') }}
    {%- if snapshot_range() is not none %}
    -- Only the days the windows reach: a literal range lets DuckDB skip the rest of the table.
    where activity_date between {{ day_literal(snapshot_range()[0]) }} - {{ longest - 1 }}
        and {{ day_literal(snapshot_range()[1]) }}
    {%- endif %}
),

snapshot_days as (
    select distinct activity_date as snapshot_date
    from activity
    where {{ run_days_predicate('activity_date', 'snapshot_date') }}
),

snapshot_customers as (
    -- Who is in the snapshot: every customer subscribed at the end of the day, with the record in force then.
    select activity.*
    from activity
    inner join snapshot_days on activity.activity_date = snapshot_days.snapshot_date
),

windows as (
    -- A customer's windows hold the days of its subscription in force (same signup_date): one who cancelled and
    -- came back is observed from its return on, like a new customer, as its tenure is.
    select
        snapshot_customers.activity_date as snapshot_date,
        snapshot_customers.customer_id,
        {%- for w in windows %}
        count(*) filter (where activity.activity_date > snapshot_customers.activity_date - {{ w }}) as observed_days_{{ w }}d,
        count(*) filter (where activity.activity_date > snapshot_customers.activity_date - {{ w }} and activity.is_active) as active_days_{{ w }}d,
        {%- for measure in measures %}
        {#- Fractional measures are summed as decimals: a sum of doubles split over DuckDB's threads comes out a
            few bits different from run to run, and a model trained on it differs too. Decimal sums are exact. #}
        {%- set value = 'cast(activity.' ~ measure ~ ' as decimal(18, 6))' if measure in ('minutes_active', 'spend') else 'activity.' ~ measure %}
        sum({{ value }}) filter (where activity.activity_date > snapshot_customers.activity_date - {{ w }}) as {{ measure }}_{{ w }}d,
        {%- endfor %}
        {%- endfor %}
        max(activity.activity_date) filter (where activity.is_active) as last_login_date,
        max(activity.activity_date) filter (where activity.purchases > 0) as last_purchase_date
    from snapshot_customers
    inner join activity
        on activity.customer_id = snapshot_customers.customer_id
        and activity.signup_date = snapshot_customers.signup_date
        and activity.activity_date between snapshot_customers.activity_date - {{ longest - 1 }}
            and snapshot_customers.activity_date
    group by snapshot_customers.activity_date, snapshot_customers.customer_id
),

features as (
    select
        snapshot_customers.customer_id,
        snapshot_customers.activity_date as snapshot_date,
        snapshot_customers.plan,
        snapshot_customers.contract,
        snapshot_customers.region,
        snapshot_customers.acquisition_channel,
        snapshot_customers.payment_method,
        snapshot_customers.monthly_price,
        cast(snapshot_customers.activity_date - snapshot_customers.signup_date as bigint) as tenure_days,
        {%- for w in windows %}
        cast(windows.observed_days_{{ w }}d as bigint) as observed_days_{{ w }}d,
        cast(windows.active_days_{{ w }}d as bigint) as active_days_{{ w }}d,
        {%- for measure in measures %}
        {%- set type = 'double' if measure in ('minutes_active', 'spend') else 'bigint' %}
        cast(windows.{{ measure }}_{{ w }}d as {{ type }}) as {{ measure }}_{{ w }}d,
        {%- endfor %}
        {%- for measure in measures %}
        cast(windows.{{ measure }}_{{ w }}d as double) / windows.observed_days_{{ w }}d as {{ measure }}_per_day_{{ w }}d,
        {%- endfor %}
        {%- endfor %}
        -- Recency within the longest window; with nothing in it, the days observed so far (a censored value:
        -- "at least this many"), which keeps the feature numeric and ordered.
        cast(coalesce(
            snapshot_customers.activity_date - windows.last_login_date, windows.observed_days_{{ longest }}d
        ) as bigint) as days_since_last_login,
        cast(coalesce(
            snapshot_customers.activity_date - windows.last_purchase_date, windows.observed_days_{{ longest }}d
        ) as bigint) as days_since_last_purchase,
        {%- for measure in trend_measures() %}
        -- The last week's daily rate against the last month's: below 1 when the customer is winding down, 1
        -- when flat (and when there was nothing to compare).
        case
            when windows.{{ measure }}_30d = 0 then 1.0
            else (cast(windows.{{ measure }}_7d as double) / windows.observed_days_7d)
                / (cast(windows.{{ measure }}_30d as double) / windows.observed_days_30d)
        end as {{ measure }}_trend_7d_30d{{ "," if not loop.last }}
        {%- endfor %}
    from snapshot_customers
    inner join windows
        on snapshot_customers.customer_id = windows.customer_id
        and snapshot_customers.activity_date = windows.snapshot_date
)

select * from features

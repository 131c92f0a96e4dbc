{#-
    The daily activity model: one row per customer subscribed at the end of a day, with the record in force then
    and the day's activity (zeros on a quiet day). Rows exist only for days the customer could be observed on,
    from sign-up (or the first day of history) to cancellation, so counting rows in a window counts the days it
    was possible to be active. A customer who cancels and subscribes again (the change feed re-issues its record
    with the new subscription's signup_date) has rows again from that day on, marked resubscribed.
-#}
{%- if snapshot_range() is not none -%}
    {{ fail_if_any_row(
        "select day from (" ~ requested_days_sql() ~ ") as requested
         where day < " ~ day_literal(history_start()) ~ "
            or day > coalesce(" ~ raw_complete_through() ~ ", date '0001-01-01')
         order by day",
        "Cannot build the daily activity of these days: the raw layer must hold a partition of customers, "
        ~ "activity_events and cancellations for every day from " ~ history_start() ~ " (history_start_date) "
        ~ "through the day. Materialize the missing raw partitions first. Days"
    ) }}
{%- endif %}

with loaded_days as (
    -- Every day the raw layer holds completely, with no gap since the start of history.
    select cast(range as date) as activity_date
    from range(
        {{ day_literal(history_start()) }},
        coalesce({{ raw_complete_through() }}, {{ day_literal(history_start()) }} - 1) + 1,
        interval 1 day
    )
),

run_days as (
    select activity_date from loaded_days
    where {{ run_days_predicate('activity_date') }}
),

records as (
    select * from {{ ref('stg_customers') }}
    where {{ run_days_prune('loaded_date', upto=true) }}
),

known_customers as (
    select distinct customer_id from records
),

customer_days as (
    select
        known_customers.customer_id,
        run_days.activity_date,
        -- The end of the day: only what happened strictly before it counts.
        cast(run_days.activity_date + interval 1 day as timestamp) as day_end
    from known_customers
    cross join run_days
),

in_force as (
    -- The record in force at the end of each day: the latest version updated before the day ended.
    select
        customer_days.customer_id,
        customer_days.activity_date,
        customer_days.day_end,
        records.signup_date,
        records.plan,
        records.contract,
        records.monthly_price,
        records.region,
        records.acquisition_channel,
        records.payment_method
    from customer_days
    asof join records
        on customer_days.customer_id = records.customer_id
        and customer_days.day_end > records.updated_at
),

cancellations as (
    select customer_id, cancel_date, cancelled_at
    from {{ ref('stg_cancellations') }}
    where {{ run_days_prune('loaded_date', upto=true) }}
),

subscribed as (
    -- Subscribed at the end of the day: no cancellation before then, or the latest one took effect before the
    -- day the subscription in force started (the customer came back). A record re-issued with the same
    -- signup_date is a change of that subscription: it never undoes a cancellation. (Not the record's
    -- updated_at: the first day's base arrives at any hour, after a cancellation of the same day too.)
    select
        in_force.*,
        cancellations.cancelled_at is not null as resubscribed
    from in_force
    asof left join cancellations
        on in_force.customer_id = cancellations.customer_id
        and in_force.day_end > cancellations.cancelled_at
    where (cancellations.cancelled_at is null or cancellations.cancel_date < in_force.signup_date)
        and in_force.signup_date <= in_force.activity_date
),

events as (
    select * from {{ ref('stg_activity_events') }}
    where {{ run_days_prune('loaded_date') }}
),

daily as (
    select
        subscribed.customer_id,
        subscribed.activity_date,
        subscribed.signup_date,
        subscribed.plan,
        subscribed.contract,
        subscribed.monthly_price,
        subscribed.region,
        subscribed.acquisition_channel,
        subscribed.payment_method,
        {%- for measure in activity_measures() %}
        {%- set type = 'double' if measure in ('minutes_active', 'spend') else 'bigint' %}
        cast(coalesce(events.{{ measure }}, 0) as {{ type }}) as {{ measure }},
        {%- endfor %}
        coalesce(events.logins, 0) > 0 as is_active,
        events.customer_id is not null as has_events,
        subscribed.resubscribed
    from subscribed
    left join events
        on subscribed.customer_id = events.customer_id
        and subscribed.activity_date = events.activity_date
)

select * from daily

{#-
    The feature snapshot of the event log: one row per user active in the 90 days up to the end of day D (the
    population: whoever came back recently enough to be worth keeping), from the events of those 90 days and
    nothing later. Windows of w days cover D - w + 1 through D.
-#}
{%- set windows = [7, 30, 90] -%}
{%- set longest = windows | max -%}

{%- if snapshot_range() is not none -%}
    {{ fail_if_any_row(
        "select day from (" ~ requested_days_sql() ~ ") as requested
         where day > coalesce(" ~ raw_complete_through() ~ ", date '0001-01-01')
         order by day",
        "Cannot build user_features: a snapshot needs the raw layer complete through its day. Days"
    ) }}
{%- endif %}

with complete_days as (
    -- Every day the raw layer holds in full, from the first day of history.
    select cast(range as date) as as_of_date
    from range(
        {{ day_literal(history_start()) }},
        coalesce({{ raw_complete_through() }}, {{ day_literal(history_start()) }} - 1) + 1,
        interval 1 day
    )
),

snapshot_days as (
    select as_of_date from complete_days where {{ run_days_predicate('as_of_date') }}
),

events as (
    select * from {{ ref('stg_transactions') }}
    where {{ run_days_prune('loaded_date', upto=true) }}
    {%- if snapshot_range() is not none %}
        and event_date >= {{ day_literal(snapshot_range()[0]) }} - {{ longest - 1 }}
    {%- endif %}
),

daily as (
    -- One row per user and day with any event. Amounts are summed as decimals: exact, so a rebuild is identical.
    select
        user_id,
        event_date,
        count(*) as events,
        count(*) filter (where event_type = 'purchase') as purchases,
        count(*) filter (where event_type = 'refund') as refunds,
        coalesce(sum(cast(amount as decimal(18, 2))) filter (where event_type = 'purchase'), 0) as spend,
        -- The channel of the day's last event (ties broken by the channel's name, so a rebuild is identical).
        max_by(channel, strftime(event_time, '%Y%m%d%H%M%S.%f') || channel) as last_channel
    from events
    group by user_id, event_date
),

windows as (
    select
        snapshot_days.as_of_date,
        daily.user_id,
        {%- for w in windows %}
        count(*) filter (where daily.event_date > snapshot_days.as_of_date - {{ w }}) as active_days_{{ w }}d,
        coalesce(sum(daily.events) filter (where daily.event_date > snapshot_days.as_of_date - {{ w }}), 0) as events_{{ w }}d,
        coalesce(sum(daily.purchases) filter (where daily.event_date > snapshot_days.as_of_date - {{ w }}), 0) as purchases_{{ w }}d,
        coalesce(sum(daily.spend) filter (where daily.event_date > snapshot_days.as_of_date - {{ w }}), 0) as spend_{{ w }}d,
        {%- endfor %}
        coalesce(sum(daily.refunds) filter (where daily.event_date > snapshot_days.as_of_date - 30), 0) as refunds_30d,
        snapshot_days.as_of_date - max(daily.event_date) as days_since_last_event,
        snapshot_days.as_of_date - min(daily.event_date) as days_since_first_event_90d,
        max_by(daily.last_channel, daily.event_date) as last_channel
    from snapshot_days
    inner join daily
        on daily.event_date between snapshot_days.as_of_date - {{ longest - 1 }} and snapshot_days.as_of_date
    group by snapshot_days.as_of_date, daily.user_id
)

select
    user_id,
    as_of_date,
    last_channel,
    cast(days_since_last_event as integer) as days_since_last_event,
    cast(days_since_first_event_90d as integer) as days_since_first_event_90d,
    {%- for w in windows %}
    cast(active_days_{{ w }}d as integer) as active_days_{{ w }}d,
    cast(events_{{ w }}d as bigint) as events_{{ w }}d,
    cast(purchases_{{ w }}d as bigint) as purchases_{{ w }}d,
    cast(spend_{{ w }}d as double) as spend_{{ w }}d,
    {%- endfor %}
    cast(refunds_30d as bigint) as refunds_30d,
    -- The trend: the last week's share of the month's active days (0.25 is a steady user; less is fading).
    case when active_days_30d = 0 then 0.0 else cast(active_days_7d as double) / active_days_30d end
        as recent_activity_share
from windows

{#-
    The label of each row of user_features: did the user go quiet, with no event at all in the N days after the
    snapshot day (N = the label horizon: meta horizon_days, or var label_horizon_days)? A label exists only once it
    has matured, once the raw layer holds every day through D + N. A run for day M labels the snapshot of M - N.
-#}
{%- set horizon = label_horizon_days() -%}

{%- if snapshot_range() is not none -%}
    {{ fail_if_any_row(
        "select day from (" ~ requested_days_sql() ~ ") as requested
         where day > coalesce(" ~ raw_complete_through() ~ ", date '0001-01-01')
         order by day",
        "Cannot label: a label maturing on a day needs the raw layer complete through that day. Days"
    ) }}
    {{ fail_if_any_row(
        "select day from (" ~ requested_days_sql(shift=-horizon) ~ ") as labelled
         where day >= " ~ day_literal(history_start()) ~ "
           and day not in (select distinct as_of_date from " ~ ref('user_features') ~ ")
         order by day",
        "Cannot label: user_features lacks the snapshot days these labels are for (" ~ horizon
        ~ " days before the requested days); build them first. Snapshot days"
    ) }}
{%- endif %}

with label_days as (
    select distinct
        as_of_date,
        cast(as_of_date + {{ horizon }} as date) as matured_on
    from {{ ref('user_features') }}
    where as_of_date + {{ horizon }} <= {{ raw_complete_through() }}
        and {{ run_days_predicate('cast(as_of_date + ' ~ horizon ~ ' as date)', 'matured_on') }}
),

population as (
    select user_features.user_id, label_days.as_of_date, label_days.matured_on
    from {{ ref('user_features') }} as user_features
    inner join label_days on user_features.as_of_date = label_days.as_of_date
),

later_activity as (
    -- The first event of each user after each labelled day, within its horizon.
    select population.user_id, population.as_of_date, min(events.event_date) as next_event_date
    from population
    inner join {{ ref('stg_transactions') }} as events
        on events.user_id = population.user_id
        and events.event_date > population.as_of_date
        and events.event_date <= population.matured_on
    where {{ run_days_prune('events.loaded_date', upto=true) }}
    group by population.user_id, population.as_of_date
)

select
    population.user_id,
    population.as_of_date,
    -- A prediction for the row is made at the end of the snapshot day, when its features are complete.
    cast(population.as_of_date + interval 1 day as timestamp) as predicted_at,
    cast({{ horizon }} as integer) as horizon_days,
    later_activity.next_event_date is null as went_quiet,
    later_activity.next_event_date,
    population.matured_on
from population
left join later_activity
    on population.user_id = later_activity.user_id and population.as_of_date = later_activity.as_of_date

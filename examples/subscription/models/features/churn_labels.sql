{#-
    The label of each row of customer_features: did the customer cancel within the N days after the snapshot day
    (N = the label horizon: meta horizon_days, or var label_horizon_days)? A label exists only once it has matured, that is once the raw layer holds every
    day through D + N; until then nobody knows it. A run for day M labels the snapshot of M - N: the labels that
    matured on M (column matured_on), so the nightly run of M adds exactly the labels M made knowable.
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
           and day not in (select distinct snapshot_date from " ~ ref('customer_features') ~ ")
         order by day",
        "Cannot label: customer_features lacks the snapshot days these labels are for (" ~ horizon
        ~ " days before the requested days); build them first. Snapshot days"
    ) }}
{%- endif %}

with feature_days as (
    select distinct snapshot_date
    from {{ ref('customer_features') }}
    {%- if snapshot_range() is not none %}
    where snapshot_date between {{ day_literal(snapshot_range()[0]) }} - {{ horizon }}
        and {{ day_literal(snapshot_range()[1]) }} - {{ horizon }}
    {%- endif %}
),

label_days as (
    -- Snapshot days whose label has matured, and are the ones this run builds.
    select
        snapshot_date,
        cast(snapshot_date + {{ horizon }} as date) as matured_on
    from feature_days
    where snapshot_date + {{ horizon }} <= {{ raw_complete_through() }}
        and {{ run_days_predicate('cast(snapshot_date + ' ~ horizon ~ ' as date)', 'matured_on') }}
),

population as (
    select customer_features.customer_id, label_days.snapshot_date, label_days.matured_on
    from {{ ref('customer_features') }} as customer_features
    inner join label_days on customer_features.snapshot_date = label_days.snapshot_date
),

cancellations as (
    select customer_id, cancel_date
    from {{ ref('stg_cancellations') }}
    where {{ run_days_prune('loaded_date', upto=true) }}
),

labelled as (
    select
        population.customer_id,
        population.snapshot_date,
        -- The moment a prediction for this row is made: the end of the snapshot day, when its features are
        -- complete. The label covers the N days that follow it.
        cast(population.snapshot_date + interval 1 day as timestamp) as prediction_time,
        cast({{ horizon }} as integer) as horizon_days,
        coalesce(cancellations.cancel_date <= population.matured_on, false) as churned,
        case
            when cancellations.cancel_date <= population.matured_on then cancellations.cancel_date
        end as cancel_date,
        population.matured_on
    from population
    -- The first cancellation after the snapshot day: a customer who cancelled before, came back (it is in the
    -- snapshot) and cancels again churns on that later cancellation.
    asof left join cancellations
        on population.customer_id = cancellations.customer_id
        and cancellations.cancel_date > population.snapshot_date
)

select * from labelled

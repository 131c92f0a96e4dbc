{#-
    The label of each row of account_snapshot: is the account closed? The label of snapshot day D is the status
    in the extract of D + N (N = the label horizon: meta horizon_days, or var label_horizon_days). The declared
    horizon is 0: the status in D's own extract, known as soon as D's extract is (a labelled table), so the label
    of D matures on D. With a horizon of N days, an account absent from the extract of D + N counts as closed: the
    CRM purges only closed accounts. A run for day M labels the snapshot of M - N.
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
           and day not in (select distinct extract_date from " ~ ref('account_snapshot') ~ ")
         order by day",
        "Cannot label: account_snapshot lacks the snapshot days these labels are for (" ~ horizon
        ~ " days before the requested days); build them first. Snapshot days"
    ) }}
{%- endif %}

with label_days as (
    select distinct
        extract_date,
        cast(extract_date + {{ horizon }} as date) as matured_on
    from {{ ref('account_snapshot') }}
    where extract_date + {{ horizon }} <= {{ raw_complete_through() }}
        and {{ run_days_predicate('cast(extract_date + ' ~ horizon ~ ' as date)', 'matured_on') }}
),

population as (
    select account_snapshot.account_no, label_days.extract_date, label_days.matured_on
    from {{ ref('account_snapshot') }} as account_snapshot
    inner join label_days on account_snapshot.extract_date = label_days.extract_date
),

matured_extract as (
    -- The extract of each maturity day: where the label is read.
    select account_no, extract_date, account_status
    from {{ ref('stg_account_extract') }}
    where {{ run_days_prune('loaded_date') }}
        and extract_date in (select matured_on from label_days)
)

select
    population.account_no,
    population.extract_date,
    -- A prediction for the row is made at the end of the snapshot day, when its extract is complete.
    cast(population.extract_date + interval 1 day as timestamp) as assessed_at,
    cast({{ horizon }} as integer) as horizon_days,
    coalesce(matured_extract.account_status, 'purged') as status_at_maturity,
    coalesce(matured_extract.account_status, 'closed') = 'closed' as is_closed,
    population.matured_on
from population
left join matured_extract
    on population.account_no = matured_extract.account_no
    and population.matured_on = matured_extract.extract_date

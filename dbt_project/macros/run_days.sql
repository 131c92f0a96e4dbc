{#-
  Which snapshot days a run builds, and the guards that stop it from building a day on missing history.

  A run is asked for one day (var snapshot_date), a range (snapshot_date_from, snapshot_date_to: a backfill in
  one run), or nothing. Asked for days, a model builds exactly those and first deletes whatever rows it held
  for them, in the same transaction: re-running a day replaces it, never duplicates it. Asked for nothing, an
  incremental model builds the days it lacks (all of them on the first run or with --full-refresh).

  Why append plus a delete, and not one of dbt's own strategies:
  - microbatch (event_time, batch_size day, --event-time-start/--event-time-end) chooses a run's days from the
    wall clock: asked for no range it rebuilds [now - lookback, now], not the days the raw layer holds that the
    table lacks, and its first run builds every day from `begin` to today, one query per day (for a replayed
    or late history: hundreds of days with no raw data, each to refuse or leave empty). What it offers in
    return, each input filtered to the batch's day by its event_time, fits none of these models: the daily
    activity reads every record version up to the day, the features 90 days back, and the labels, keyed on the
    day they mature, the snapshot N days earlier. Every ref would opt out (.render()) and filter by hand, as
    here. And a month's backfill would be 31 queries per model instead of one that computes the windows
    together.
  - delete+insert and merge touch only the keys the new result holds: a day whose new result is empty (a
    corrected raw partition, a day everybody cancelled) would keep its old rows.
-#}

{% macro _as_date(value, name) -%}
    {%- if value is none -%}{{ return(none) }}{%- endif -%}
    {%- set text = value | string -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a day as YYYY-MM-DD, got '" ~ text ~ "'") }}
    {%- endif -%}
    {{ return(modules.datetime.date.fromisoformat(text)) }}
{%- endmacro %}


{% macro snapshot_range() -%}
    {#- The requested [first, last] days as dates, or none when the run was asked for no day. A unit test reads
        its fixtures, not the warehouse: it builds what they hold, whatever days the run was asked for. -#}
    {%- if model is defined and model.resource_type == 'unit_test' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set one = _as_date(var('snapshot_date', none), 'snapshot_date') -%}
    {%- set first = _as_date(var('snapshot_date_from', none), 'snapshot_date_from') -%}
    {%- set last = _as_date(var('snapshot_date_to', none), 'snapshot_date_to') -%}
    {%- if one is not none and (first is not none or last is not none) -%}
        {{ exceptions.raise_compiler_error("set either snapshot_date or snapshot_date_from/snapshot_date_to, not both") }}
    {%- elif one is not none -%}
        {{ return([one, one]) }}
    {%- elif first is none and last is none -%}
        {{ return(none) }}
    {%- elif first is none or last is none -%}
        {{ exceptions.raise_compiler_error("snapshot_date_from and snapshot_date_to go together") }}
    {%- elif first > last -%}
        {{ exceptions.raise_compiler_error("snapshot_date_from (" ~ first ~ ") is after snapshot_date_to (" ~ last ~ ")") }}
    {%- endif -%}
    {{ return([first, last]) }}
{%- endmacro %}


{% macro history_start() -%}
    {{ return(_as_date(var('history_start_date'), 'history_start_date')) }}
{%- endmacro %}


{% macro label_horizon_days() -%}
    {#- The label horizon N in days: var label_horizon_days when set (Dagster's runs pass the one in force),
        else the label model's own declaration (meta horizon_days). 0 is a label known in the extract itself. -#}
    {%- set text = var('label_horizon_days', '') | string -%}
    {%- if (text == '' or text == 'None') and not execute -%}
        {{ return(0) }}  {#- parsing: nothing is run, and the graph is not there yet -#}
    {%- elif text == '' or text == 'None' -%}
        {%- set labels = [] -%}
        {%- for node in (graph.get('nodes') or {}).values() if node.resource_type == 'model' and (node.config.meta or {}).get('role') == 'labels' -%}
            {%- do labels.append(node) -%}
        {%- endfor -%}
        {%- set text = (labels[0].config.meta.horizon_days if labels else none) | string -%}
    {%- endif -%}
    {%- if not modules.re.match('^[0-9]+$', text) -%}
        {{ exceptions.raise_compiler_error("the label horizon must be a whole number of days >= 0 (var label_horizon_days or the label model's meta horizon_days), got '" ~ text ~ "'") }}
    {%- endif -%}
    {{ return(text | int) }}
{%- endmacro %}


{% macro day_literal(day) -%}
    date '{{ day.isoformat() if day is not string else day }}'
{%- endmacro %}


{% macro run_days_predicate(column, existing_column=none) -%}
    {#- True for the rows of the days this run builds: `column` holds a candidate row's day, `existing_column`
        (default: the same name) the day of the rows the model already holds. -#}
    {%- set requested = snapshot_range() -%}
    {%- if requested is not none -%}
        {{ column }} between {{ day_literal(requested[0]) }} and {{ day_literal(requested[1]) }}
    {%- elif is_incremental() -%}
        {{ column }} not in (select distinct {{ existing_column or column }} from {{ this }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{% macro replace_run_days() -%}
    {#- The pre-hook of every model (dbt_project.yml): a run asked for days owns them, so an incremental model
        with a day column (meta run_days_column) deletes their rows before inserting the new ones (the
        materialization runs both in one transaction: a reader sees the old day or the new one). -#}
    {%- set column = (config.get('meta') or {}).get('run_days_column') -%}
    {%- set requested = snapshot_range() -%}
    {%- if column and requested is not none and is_incremental() -%}
        delete from {{ this }}
        where {{ column }} between {{ day_literal(requested[0]) }} and {{ day_literal(requested[1]) }}
    {%- endif -%}
{%- endmacro %}


{% macro raw_complete_through() -%}
    {#- The last day D such that every declared raw table has a partition for every day from the start of history to D
        (a scalar subquery; null when the first day is missing). -#}
    (
        select max(partition_date)
        from (
            select partition_date, row_number() over (order by partition_date) as day_number
            from {{ ref('stg_raw_partitions') }}
            where partition_date >= {{ day_literal(history_start()) }}
            group by partition_date
            -- Every declared table (in a unit test, which declares none, every table its fixture holds).
            having count(distinct table_name) = greatest(
                {{ raw_tables() | length }}, (select count(distinct table_name) from {{ ref('stg_raw_partitions') }})
            )
        ) as complete_days
        where partition_date = {{ day_literal(history_start()) }} + cast(day_number - 1 as integer)
    )
{%- endmacro %}


{% macro fail_if_any_row(sql, message) -%}
    {#- Stops the run with `message` and the offending days when `sql` returns a row (its first column). -#}
    {%- if execute -%}
        {%- set found = run_query(sql) -%}
        {%- if found.rows | length > 0 -%}
            {%- set days = [] -%}
            {%- for row in found.rows -%}{%- do days.append(row[0] | string) -%}{%- endfor -%}
            {{ exceptions.raise_compiler_error(message ~ ": " ~ days[:10] | join(", ") ~ (" ..." if days | length > 10 else "")) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro run_days_prune(column, upto=false) -%}
    {#- A literal filter on a partition column, so DuckDB reads only the raw partitions a run needs (a filter
        through a subquery would not prune files). upto: every partition up to the last day, not just the days. -#}
    {%- set requested = snapshot_range() -%}
    {%- if requested is none -%}
        true
    {%- elif upto -%}
        {{ column }} <= {{ day_literal(requested[1]) }}
    {%- else -%}
        {{ column }} between {{ day_literal(requested[0]) }} and {{ day_literal(requested[1]) }}
    {%- endif -%}
{%- endmacro %}


{% macro requested_days_sql(shift=0) -%}
    {#- The requested days (shifted by `shift` days) as rows of one column, `day`. -#}
    {%- set requested = snapshot_range() -%}
    select cast(range as date) as day
    from range(
        {{ day_literal(requested[0]) }} + {{ shift }},
        {{ day_literal(requested[1]) }} + {{ shift + 1 }},
        interval 1 day
    )
{%- endmacro %}

{#-
  Tests of a run that was asked for days check those days. A model declares the column that holds each row's
  day (config meta `run_days_column`); when the run has requested days, every data test attached to the model
  reads only the rows of those days, as its own `where` would. The rest of the table was checked when it was
  built, and re-reading a year of rows every night would cost more than building the day. Runs asked for no
  day (plain `dbt build`) test whole tables. This overrides dbt's own macro (dbt documents the override).
-#}
{% macro get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- do filters.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if execute and snapshot_range() is not none and model.attached_node -%}
        {%- set tested = graph.nodes.get(model.attached_node) -%}
        {%- set column = (tested.config.meta or {}).get('run_days_column') if tested else none -%}
        {%- if column -%}
            {%- do filters.append(run_days_predicate(column)) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if filters -%}
        (select * from {{ relation }} where {{ filters | join(' and ') }}) dbt_subquery
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}

-- One row per partition file of the raw layer, read from the folder names rather than the rows: a day with no
-- row in a table still has its (empty) partition, and "loaded" must not be confused with "had rows". The tables
-- are the problem's declared raw tables (macros/lake.sql, raw_tables), so this model is the same for every problem;
-- a day is complete when each of them has its partition (macros/run_days.sql, raw_complete_through).
{%- set tables = raw_tables() %}

with files as (
    {%- for table in tables %}
    select '{{ table }}' as table_name, file as file_path
    from glob('{{ lake_glob("raw", table) }}')
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select cast(null as varchar) as table_name, cast(null as varchar) as file_path where false
    {%- endfor %}
),

parsed as (
    select
        table_name,
        cast(regexp_extract(file_path, 'date=([0-9]{4}-[0-9]{2}-[0-9]{2})', 1) as date) as partition_date,
        file_path
    from files
)

select * from parsed

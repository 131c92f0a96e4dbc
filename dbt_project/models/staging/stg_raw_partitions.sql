-- One row per partition file of the raw layer, read from the folder names rather than the rows: a day with no
-- cancellation at all still has its (empty) partition, and "loaded" must not be confused with "had rows".
-- Lineage: {{ source('raw', 'customers') }}, {{ source('raw', 'activity_events') }}, {{ source('raw', 'cancellations') }}
{% set tables = ['customers', 'activity_events', 'cancellations'] %}

with files as (
    {% for table in tables %}
    select '{{ table }}' as table_name, file as file_path
    from glob('{{ lake_glob("raw", table) }}')
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

parsed as (
    select
        table_name,
        cast(regexp_extract(file_path, 'date=([0-9]{4}-[0-9]{2}-[0-9]{2})', 1) as date) as partition_date,
        file_path
    from files
)

select * from parsed

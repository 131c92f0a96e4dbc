{#- Where a lake table's partitions live: <lake root>/<layer>/<table>/date=YYYY-MM-DD/part-0.parquet
    (dagster_project/lake.py writes them; the lake root is the profile's external_root, see profiles.yml). -#}
{% macro lake_glob(layer, table) -%}
    {{ target.external_root }}/{{ layer }}/{{ table }}/date=*/*.parquet
{%- endmacro %}

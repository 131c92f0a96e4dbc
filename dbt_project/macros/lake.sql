{#- The lake's root: PLATFORM_LAKE_ROOT, or <PLATFORM_DATA_ROOT>/lake, or <repo>/data/lake, as settings.py derives it.
    The repository root is the profiles folder's parent (profiles.yml lives in the project folder). -#}
{% macro lake_root() -%}
    {{ return(env_var('PLATFORM_LAKE_ROOT', env_var('PLATFORM_DATA_ROOT', flags.PROFILES_DIR ~ '/../data') ~ '/lake')) }}
{%- endmacro %}


{#- Where a lake table's partitions live: <lake_root>/<layer>/<table>/date=YYYY-MM-DD/part-0.parquet
    (dagster_project/lake.py writes them). -#}
{% macro lake_glob(layer, table) -%}
    {{ lake_root() }}/{{ layer }}/{{ table }}/date=*/*.parquet
{%- endmacro %}

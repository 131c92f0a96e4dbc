{#- Where a lake table's partitions live: <lake root>/<layer>/<table>/date=YYYY-MM-DD/part-0.parquet
    (dagster_project/lake.py writes them; the lake root is the profile's external_root, see profiles.yml). -#}
{% macro lake_glob(layer, table) -%}
    {{ target.external_root }}/{{ layer }}/{{ table }}/date=*/*.parquet
{%- endmacro %}

{#- The raw tables the problem declares (the `raw` source of its YAML), by name. Read from the graph, so the
    platform's models need no list of their own; empty while dbt parses (nothing is run then). -#}
{% macro raw_tables() -%}
    {%- set names = [] -%}
    {%- if execute -%}
        {#- A unit test's graph holds no sources: its fixtures say which tables there are. -#}
        {%- for node in (graph.get('sources') or {}).values() if node.source_name == 'raw' -%}
            {%- do names.append(node.name) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(names | sort) }}
{%- endmacro %}

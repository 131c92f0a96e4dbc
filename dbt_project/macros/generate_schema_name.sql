{#- Layers are schemas of their own (staging, intermediate, marts), named as is rather than prefixed with the
    target's schema: readers query marts.customer_features in every environment. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}

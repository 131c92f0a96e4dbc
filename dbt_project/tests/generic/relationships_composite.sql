{#- Every key of the model, spread over several columns, exists in `to`: a relationships test for composite
    keys. `to_columns` names the parent's columns when they differ (same order). -#}
{% test relationships_composite(model, to, columns, to_columns=none) %}
    {%- set parent_columns = to_columns or columns %}
    with child as (
        select distinct {{ columns | join(', ') }} from {{ model }}
    ),

    parent as (
        select distinct
            {%- for column in parent_columns %}
            {{ column }} as {{ columns[loop.index0] }}{{ ',' if not loop.last }}
            {%- endfor %}
        from {{ to }}
    )

    select child.*
    from child
    left join parent
        on {% for column in columns -%}
        child.{{ column }} = parent.{{ column }}{{ ' and ' if not loop.last }}
        {%- endfor %}
    where parent.{{ columns[0] }} is null
{% endtest %}

{#- Every listed column holds a number >= 0 on every row (a null fails): one check for a family of columns,
    such as the totals and averages of every window, instead of one per column. A failing row is returned
    whole, so `dbt build --store-failures` shows which column broke. -#}
{% test non_negative_numbers(model, columns) %}
    select *
    from {{ model }}
    where not coalesce(
        {%- for column in columns %}
        {{ column }} >= 0{{ ' and' if not loop.last }}
        {%- endfor %}
    , false)
{% endtest %}

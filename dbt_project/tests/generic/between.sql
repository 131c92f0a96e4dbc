{#- Every non-null value lies in [min_value, max_value] (either bound may be left out); exclusive bounds with
    min_exclusive / max_exclusive. -#}
{% test between(model, column_name, min_value=none, max_value=none, min_exclusive=false, max_exclusive=false) %}
    select {{ column_name }} as out_of_range
    from {{ model }}
    where {{ column_name }} is not null
      and (
        false
        {%- if min_value is not none %}
        or {{ column_name }} {{ '<=' if min_exclusive else '<' }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        or {{ column_name }} {{ '>=' if max_exclusive else '>' }} {{ max_value }}
        {%- endif %}
      )
{% endtest %}

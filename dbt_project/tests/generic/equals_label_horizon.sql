{#- Every row uses the label horizon in force (label_horizon_days): a table never mixes two label definitions.
    Changing the horizon means rebuilding the labels with --full-refresh. -#}
{% test equals_label_horizon(model, column_name) %}
    select {{ column_name }} as other_horizon
    from {{ model }}
    where {{ column_name }} is distinct from {{ label_horizon_days() }}
{% endtest %}

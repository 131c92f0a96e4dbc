{#- The features, declared as data (Feast-style): the windows and the daily measures they aggregate. Adding one is
    a new version of the feature set: bump feature_set_version (models/features/_features__models.yml), declare
    the new columns there, and rebuild with --full-refresh. -#}

{% macro feature_windows() -%}
    {{ return([7, 30, 90]) }}
{%- endmacro %}

{% macro activity_measures() -%}
    {{ return(['logins', 'sessions', 'minutes_active', 'purchases', 'spend', 'support_tickets', 'payment_failures']) }}
{%- endmacro %}

{% macro trend_measures() -%}
    {{ return(['logins', 'sessions', 'minutes_active', 'active_days']) }}
{%- endmacro %}

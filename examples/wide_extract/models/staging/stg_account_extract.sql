-- One row per account and extract day, typed, with the partition it was loaded with.
with source as (
    select * from {{ source('raw', 'account_extract') }}
),

renamed as (
    select
        account_no,
        cast(extract_date as date) as extract_date,
        account_status,
        cast(status_since as date) as status_since,
        cast(opened_on as date) as opened_on,
        segment,
        sales_region,
        industry,
        plan_tier,
        billing_cycle,
        preferred_contact,
        payment_terms,
        credit_grade,
        lead_source,
        support_level,
        cast(seats_licensed as bigint) as seats_licensed,
        cast(seats_active as bigint) as seats_active,
        cast(monthly_fee as double) as monthly_fee,
        cast(discount_pct as double) as discount_pct,
        cast(last_invoice_amount as double) as last_invoice_amount,
        cast(balance_due as double) as balance_due,
        cast(days_past_due as bigint) as days_past_due,
        cast(late_payments_12m as bigint) as late_payments_12m,
        cast(credit_limit as double) as credit_limit,
        cast(logins_30d as bigint) as logins_30d,
        cast(days_since_login as bigint) as days_since_login,
        cast(support_cases_90d as bigint) as support_cases_90d,
        cast(open_complaints as bigint) as open_complaints,
        cast(sales_touches_90d as bigint) as sales_touches_90d,
        cast(csat_score as double) as csat_score,
        cast(nps_response as bigint) as nps_response,
        cast(employee_count as bigint) as employee_count,
        cast(annual_revenue_musd as double) as annual_revenue_musd,
        cast(products_held as bigint) as products_held,
        cast(auto_renew_flag as bigint) as auto_renew_flag,
        cast(paperless_flag as bigint) as paperless_flag,
        cast("date" as date) as loaded_date
    from source
)

select * from renamed

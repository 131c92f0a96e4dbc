"""The daily partitions, declared once: one partition per business day of data, starting on the first day."""

import dagster as dg

from dagster_project.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().partitions_start.isoformat())

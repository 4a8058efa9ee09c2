"""What every stage stands on: Spark with Delta, lake tables, quality gates, the SID vocabulary."""

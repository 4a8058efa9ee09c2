"""ETL: raw logs and public data sets -> bronze, silver and gold Delta tables."""

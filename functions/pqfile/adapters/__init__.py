"""The only code that imports boto3 and pg8000: S3, KMS, PostgreSQL adapters."""

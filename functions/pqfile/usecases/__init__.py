"""One function per workflow step. No boto3, no pg8000: only ports (pqfile.ports)."""

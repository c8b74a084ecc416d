"""LocalStack on the host (issue 17): run by `make test-localstack` (and `.ci/run`), not by
`make test`: it installs LocalStack into its own virtualenv and deploys the whole Terraform
root (minutes). The Makefile target sets PQFILE_LOCALSTACK_TESTS=1."""

import os

collect_ignore_glob = [] if os.environ.get("PQFILE_LOCALSTACK_TESTS") == "1" else ["test_*.py"]

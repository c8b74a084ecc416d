# Remote state (docs/OPERATIONS.md, "Remote state"): the S3 backend is declared with no
# settings so each environment supplies its own at init time:
#
#   terraform init -backend-config=envs/prod.s3.tfbackend
#
# The local stack and the CI checks override it with `-backend=false` or a local state file
# (devstack/terraform.py writes an override file in its own working copy).
terraform {
  backend "s3" {}
}

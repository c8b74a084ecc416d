# LocalStack in Docker (docker-compose.yml; docs/OPERATIONS.md "LocalStack in Docker"): what
# differs from LocalStack on the host. Given after envs/localstack.tfvars by
# `make deploy-localstack` on the Docker path, so its resources are named pqfile-docker-*.
environment = "docker"

# The functions run in Lambda containers on the `pqfile` Docker network: they reach the
# compose postgres service by its name. No TLS inside that network (the postgres image has no
# certificate); the owner's password is docker-compose.yml's POSTGRES_PASSWORD. Only the
# migrate function gets this URL as given; every other function gets its own role instead
# of `pqfile:pqfile` (database_url_per_role).
database_url          = "postgresql://pqfile:pqfile@postgres:5432/pqfile?sslmode=disable"
database_url_per_role = true

# The postgres image refuses network logins without a password (scram-sha-256): each role
# gets a generated password in its own Secrets Manager secret, which the migrate function
# sets as a SCRAM verifier and each function reads at connect time (terraform/proxy.tf).
database_role_passwords = true

# Identity proofs: inside the network the functions reach LocalStack's STS as
# http://localstack:4566, which is not loopback; this one host is allowed plain http
# (PQFILE_STS_PLAIN_HTTP_HOST, local environments only). Operators export
# PQFILE_STS_ENDPOINT_URL=http://localstack:4566 and PQFILE_STS_PLAIN_HTTP_HOST=localstack
# so the CLI signs its proofs for the same URL (it never connects to it).
sts_endpoint_url    = "http://localstack:4566"
sts_plain_http_host = "localstack"

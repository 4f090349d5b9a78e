"""Operating a deployment, whoever runs it (`epochflow up` or docker compose): prepare it
(`init`), read input files to publish (`ingest`), report on it (`status`), replay a role
(`replay`). The CLI's commands are thin wrappers around these."""

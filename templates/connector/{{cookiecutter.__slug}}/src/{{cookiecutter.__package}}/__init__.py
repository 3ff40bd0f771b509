"""{{ cookiecutter.connector_name }}: the transform that turns {{ cookiecutter.protobuf_message }} records into what the {{ cookiecutter.writer }} writer stores.

Everything else (reading, decoding, batching, writing, committing, metrics, health) is the
kafka-connectors runtime's job and is configured by environment variables: see
`.env.example`.
"""

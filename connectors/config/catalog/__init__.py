"""Topics as code: a folder of YAML files, one per topic, validated offline.

`model` is one topic file, `load` reads a folder of them, `lint` checks the whole catalog
(types resolvable, replication, duplicates), `plan` compares it with a cluster's state
given as data. Nothing here connects: the admin calls live in `connectors.kafka.admin`.
"""

from connectors.config.catalog.load import Catalog, CatalogError, load_catalog
from connectors.config.catalog.model import ConsumeAcl, Retention, TopicSpec

__all__ = ["Catalog", "CatalogError", "ConsumeAcl", "Retention", "TopicSpec", "load_catalog"]
